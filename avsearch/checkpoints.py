"""Reading torch weights files safely: `torch.load(weights_only=True)` everywhere, and one way of saying
no. A file that holds Python objects besides tensors is refused in one line naming the file and what it
holds; no code from it runs, and nobody is told to turn the protection off."""

from __future__ import annotations

import contextlib
import pickle
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from avsearch.errors import IncompatibleError, InputError

# torch names the offending object: "Unsupported global: GLOBAL posix.system", "unsupported GLOBAL posix.system"
_GLOBAL = re.compile(r"\bGLOBAL\s+([\w.]+)")


def refusal(path: object, exc: BaseException, hint: str = "") -> IncompatibleError:
    """The error for a weights file that a weights-only load refused (`exc`)."""
    found = _GLOBAL.search(str(exc))
    what = f"a {found.group(1)} object" if found else "data that a weights-only load does not accept"
    return IncompatibleError(
        f"{path}: refused: it holds {what}; avsearch reads weights files without running code from them{hint}"
    )


def is_refusal(exc: BaseException) -> bool:
    """Whether `exc` is torch refusing a weights-only load (rather than a damaged or foreign file)."""
    return isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in str(exc)


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Around a weights-only torch.load: torch warns about files pickled with a newer protocol before it
    reads (or refuses) them; the refusal, when there is one, is ours and says more."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        yield


def load_mapped(path: Path, what: str, allowed: Sequence[type] = ()) -> Any:
    """A weights-only torch.load, memory-mapped where the file's format allows (so parts a model does not
    use are not read), with `allowed` extra classes. A refused file is `refusal`; an unreadable one is one
    InputError line naming it as a `what` checkpoint."""
    import torch  # here, not at module level: commands that load no model import no torch

    try:
        with torch.serialization.safe_globals(list(allowed)), loading():
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) file
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        if is_refusal(exc):
            raise refusal(path, exc) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable {what} checkpoint ({first})") from exc
