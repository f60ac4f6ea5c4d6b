"""Lance's errors named: a store that does not answer, a damaged table, a filter a column refuses."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from avsearch.errors import DamagedIndexError, InputError, StorageError

F = TypeVar("F", bound=Callable[..., Any])

# how object_store (under Lance) words a store it cannot reach or that refuses the credentials
UNREACHABLE = (
    "Generic S3 error",
    "Generic GCS error",
    "Generic MicrosoftAzure error",
    "Generic { store: ",
    "Error performing",
    "error sending",
)
FILTER_REFUSED = "Error resolving filter expression"


def unreachable(exc: BaseException) -> bool:
    """Whether a Lance error says an object store did not answer or refused us (not damage)."""
    return any(m in str(exc) for m in UNREACHABLE)


def unreadable(what: str, exc: BaseException) -> StorageError:
    """A store that does not answer: nothing damaged, nothing to rebuild, try again later (503)."""
    detail = str(exc).splitlines()[0][:160]
    return StorageError(
        f"{what} cannot be read from the store ({detail}); check the endpoint, the credentials and the network"
    )


@contextlib.contextmanager
def outages_named(what: str, remote: bool) -> Iterator[None]:
    """For calls outside `damage_named` (listing, creating, index stats): an object store (`remote`) that
    stops answering during the block is a StorageError naming `what`; other errors pass as they are."""
    try:
        yield
    except (RuntimeError, OSError, ValueError) as exc:
        if remote and unreachable(exc):
            raise unreadable(what, exc) from exc
        raise


def damage_named(method: F) -> F:
    """Lance reports missing or corrupt table files as RuntimeError("lance error: ..."): a damaged index,
    named with its way out, not a traceback. Other errors are ours and surface."""

    @functools.wraps(method)
    def wrapper(self: Any, modality: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, modality, *args, **kwargs)
        except (RuntimeError, OSError, ValueError) as exc:
            detail = str(exc).splitlines()[0][:200]
            if FILTER_REFUSED in str(exc):
                # a literal LanceDB cannot convert to its column's type: the filter's fault, not the table's
                # (search/filters refuses such literals first; "rebuild the index" would be wrong advice)
                raise InputError(f"filter on table {modality!r} cannot be evaluated ({detail})") from exc
            if "lance" not in str(exc).lower() and "not found" not in str(exc).lower():
                raise
            if isinstance(self.index_dir, str) and unreachable(exc):
                raise unreadable(f"{self.index_dir}: table {modality!r}", exc) from exc
            raise DamagedIndexError(
                f"{self.index_dir}: table {modality!r} is damaged ({detail}); "
                "`avsearch index FOLDER --rebuild` re-embeds the index from its media"
            ) from exc

    return wrapper  # type: ignore[return-value]
