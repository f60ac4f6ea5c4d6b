"""Helpers shared by the command modules: the error boundary and console objects."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from avsearch.errors import AvsearchError

if TYPE_CHECKING:
    from avsearch.store.location import Location

F = TypeVar("F", bound=Callable[..., Any])

# Options several commands share, declared once so their names and help read the same everywhere.
WeightsDirOption = Annotated[
    Path | None, typer.Option("--weights-dir", help="Offline weights folder (default: $AVSEARCH_WEIGHTS).")
]
DeviceOption = Annotated[str | None, typer.Option("--device", help="cpu, cuda or cuda:N (default: CUDA when present).")]
# a str, not a Path: Path would fold the "//" of s3://bucket/path
IndexDirOption = Annotated[
    str | None,
    typer.Option(
        "--index-dir",
        help="Index folder, or s3://bucket/path (gs://, az://) (default: $AVSEARCH_INDEX_DIR or indexes/default).",
    ),
]
StorageOption = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        help=(
            "key=value for an index on object storage, over the environment (AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP); repeat for several, "
            "e.g. --storage-option aws_endpoint=http://127.0.0.1:8333."
        ),
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]

# Results go to stdout, progress and diagnostics to stderr (so `--json` output stays pipeable).
out = Console(soft_wrap=True)
err = Console(stderr=True)


def index_location(index_dir: str | Path | None, storage_options: list[str] | None = None) -> Location:
    """The index a command works on: --index-dir (or $AVSEARCH_INDEX_DIR) with its --storage-option pairs."""
    from avsearch.settings import load_settings
    from avsearch.store.location import Location, parse_storage_options

    return Location(index_dir or load_settings().index_dir, parse_storage_options(storage_options))


def reflow(doc: str) -> str:
    """A docstring as help text: each paragraph on one line, so the terminal decides where it wraps.

    Typer keeps the source's line breaks after the first paragraph, which cut sentences at the source's
    width whatever the terminal's. Paragraphs stay apart; one that starts with \\b (click's "keep these
    line breaks" mark) or holds "- " list items keeps its lines.
    """
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(p if _keeps_lines(p) else " ".join(p.split("\n")) for p in paragraphs)


def _keeps_lines(paragraph: str) -> bool:
    return paragraph.startswith("\b") or any(line.lstrip().startswith("- ") for line in paragraph.splitlines())


def reflow_help(app: typer.Typer) -> None:
    """Reflow the help of every command registered on `app` and its sub-apps (see reflow)."""
    for info in app.registered_commands:
        doc = info.help or inspect.getdoc(info.callback)
        if doc:
            info.help = reflow(doc)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)


def user_errors(fn: F) -> F:
    """Turn an AvsearchError raised by a command into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AvsearchError as exc:
            typer.echo(f"avsearch: error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("avsearch: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def faiss_summary(p: dict[str, Any]) -> str:
    """One line about a FAISS build (its saved parameters): kind, tuned settings and the recall@10 it
    measured on held-out cross-modal queries when it was built."""
    if not p.get("nlist"):
        return f"{p['kind']} (exact)"
    text = f"{p['kind']} nprobe {p['nprobe']}/{p['nlist']}"
    if p.get("k_factor"):
        text += f" k_factor {p['k_factor']}"
    if p.get("coarse") == "hnsw":
        text += " (HNSW coarse)"
    if p.get("heldout_recall") is not None:
        held = max(1, p.get("tuning_queries", 0) - p.get("tuning_queries", 0) // 2)
        # with no cross-modal queries to tune on, the build made stand-ins from its own vectors (ann_tune.py)
        what = (
            "stand-ins for cross-modal queries" if p.get("tuning_source") == "synthetic-gap" else "cross-modal queries"
        )
        text += f", recall@10 {p['heldout_recall']:.3f} on {held} held-out {what}"
    extra = p.get("extra") or {}
    if (extra.get("spills") or {}).get("route_shift"):
        text += ", cross-modal queries routed by a learned shift"
    own = extra.get("same_modality")
    if own:
        text += f"; same-modality queries nprobe {own['nprobe']}" + (
            f" k_factor {own['k_factor']}" if own["k_factor"] else ""
        )
        text += f", recall@10 {own['heldout_recall']:.3f}"
    passed = extra.get("fell_back_from")
    if passed:
        text += f" ({', '.join(passed)} stayed below the recall target)"
    return text
