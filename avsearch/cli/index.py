"""`avsearch index FOLDER`: build or update a search index over a media folder."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from avsearch.cli.common import (
    DeviceOption,
    IndexDirOption,
    QuietOption,
    StorageOption,
    WeightsDirOption,
    err,
    faiss_summary,
    index_location,
    out,
    user_errors,
)
from avsearch.cli.live_progress import progress_bars
from avsearch.errors import InputError
from avsearch.media.walk import printable

if TYPE_CHECKING:
    from avsearch.indexing.pipeline import IndexSummary

SOME_FILES_FAILED = 3  # exit code: the run completed, but some media files could not be indexed


class RichProgress:
    """The pipeline's progress protocol drawn as rich bars on stderr (scan, hash, embed, index build)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.done: dict[str, int] = {}

    def start(self, stage: str, total: int | None) -> None:
        self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.done[stage] = 0

    def advance(self, stage: str, n: int = 1) -> None:
        self.done[stage] += n
        self.progress.advance(self.tasks[stage], n)

    def finish(self, stage: str) -> None:
        # stages of unknown length (scan, index build) end as full bars of what they did
        self.progress.update(self.tasks[stage], total=max(self.done[stage], 1), completed=max(self.done[stage], 1))


@user_errors
def index_command(
    folder: Annotated[
        Path | None, typer.Argument(help="Media folder to index (audio, images, 3D shapes; told by content).")
    ] = None,
    embeddings: Annotated[
        Path | None,
        typer.Option(
            "--embeddings",
            help=(
                "Index pre-extracted vectors instead of a folder: {modality}.{space}.npy files "
                "(image.clip.npy, audio.clap.npy, ...) as `avsearch embed` writes them, ids from their "
                ".rows.jsonl or <file>#<row>."
            ),
        ),
    ] = None,
    index_dir: IndexDirOption = None,
    storage_option: StorageOption = None,
    bridge: Annotated[
        list[Path] | None,
        typer.Option(
            "--bridge",
            help=(
                "Bridge file: .safetensors from `avsearch train` or a released clap_clip.pt / ulip_clip.pt. "
                "A new index without it uses the released clap_clip.pt and ulip_clip.pt from the weights "
                "folder; an existing index keeps its own. Repeat for two bridges."
            ),
        ),
    ] = None,
    weights_dir: WeightsDirOption = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="Files per encoder call and per committed write."),
    ] = None,
    device: DeviceOption = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Decode again files that failed before and have not changed.")
    ] = False,
    rebuild: Annotated[
        bool,
        typer.Option("--rebuild", help="Drop the tables and FAISS files and embed everything again (damaged index)."),
    ] = False,
    tags: Annotated[
        Path | None,
        typer.Option(
            "--tags",
            help=(
                "Tags sidecar for `query --tag` / --where \"tag = 'x'\": CSV with a `path,tags` header (tags "
                'separated by ; or ,) or JSON lines {"path": ..., "tags": [...]}, paths relative to FOLDER. '
                "Without it, FOLDER/avsearch-tags.csv or FOLDER/avsearch-tags.jsonl is read when present "
                "(configs/metadata.toml). Edited tags apply on the next run without re-embedding."
            ),
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help=(
                "Search backend(s) to add: cmcr (C-MCR bridges over CLIP/CLAP/ULIP-2; audio, images, 3D, text "
                "queries), cavmae (CAV-MAE: audio and images, audio <-> image queries) or both. An index keeps "
                "every backend it has and each run updates them all; adding one embeds only what it lacks. "
                "Default: the index's own; a new index: configs/backends.toml (cmcr)."
            ),
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help=(
                "Embed on a Ray cluster (pip install avsearch[ray]): auto (the running cluster: RAY_ADDRESS or "
                "this machine's), HOST:PORT or ray://HOST:10001, or local (start Ray here for this run). Same "
                "plan, table and resume as a local run; every node must see the media, weights, bridges and "
                "index folder at the same paths."
            ),
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's report as JSON on stdout.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Index a media folder, or bring its index up to date.

    Unchanged files are skipped, changed ones re-embedded, deleted ones removed and renames recognised
    by content hash. Work is committed in batches: after an interruption, run the same command again.
    Each file's metadata (folder, extension, duration, sample rate, picture size, point count, tags) is
    stored for `avsearch query --where`; an index made before that gets it on its next run, from the
    files' headers, without re-embedding.

    Exit code: 0 when every media file is indexed, 3 when some could not be (each listed with its
    reason on stderr, and in --json), 1 for bad input or usage.
    """
    from avsearch.indexing.pipeline import index_folder
    from avsearch.indexing.vectors import index_embeddings
    from avsearch.settings import load_settings
    from avsearch.store.index import Index

    if (folder is None) == (embeddings is None):
        raise InputError("give a media FOLDER to index, or --embeddings DIR of vectors (one of the two)")
    if tags is not None and embeddings is not None:
        raise InputError('--tags is for a media FOLDER; vectors carry their tags in .rows.jsonl ({"tags": [...]})')
    if ray is not None and embeddings is not None:
        raise InputError("--ray embeds the files of a media FOLDER; --embeddings are vectors already")
    index_run = index_folder if ray is None else _on_ray(ray)
    settings = load_settings()
    with progress_bars(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=quiet,
        transient=False,
    ) as bars:
        if folder is not None:
            summary = index_run(
                folder,
                index_location(index_dir, storage_option),
                bridges=bridge or None,
                weights_dir=weights_dir or settings.weights_dir,
                device=device or settings.device,
                batch_size=batch_size,
                progress=RichProgress(bars),
                retry_failed=retry_failed,
                rebuild=rebuild,
                tags=tags,
                backend=backend,
            )
        else:
            with Index.update(
                index_location(index_dir, storage_option),
                bridges=bridge or None,
                weights_dir=weights_dir or settings.weights_dir,
                device=device or settings.device,
                backend=backend,
            ) as index:
                summary = index_embeddings(embeddings, index, RichProgress(bars))
    if as_json:
        out.print_json(json.dumps(_report(summary)))
    else:
        _print_summary(summary)
    if summary.failed:
        raise typer.Exit(SOME_FILES_FAILED)


def _on_ray(address: str) -> Callable[..., IndexSummary]:
    """index_folder with the embedding on Ray (imported for --ray only: Ray is an optional extra)."""
    from avsearch.indexing.distributed import index_folder_ray

    return functools.partial(index_folder_ray, address=address)


def _report(summary: IndexSummary) -> dict[str, Any]:
    report = dataclasses.asdict(summary)
    report["root"] = printable(summary.root)
    report["failed"] = [{"path": printable(p), "reason": why} for p, why in summary.failed]
    return report


def _print_summary(summary: IndexSummary) -> None:
    table = Table(title=f"index {summary.index_dir} ({summary.seconds:.1f} s)")
    table.add_column("files")
    table.add_column("count", justify="right")
    for label, value in (
        ("scanned", summary.scanned),
        ("added", summary.added),
        ("unchanged", summary.unchanged),
        ("touched", summary.touched),
        ("renamed", summary.renamed),
        ("copied", summary.copied),
        ("re-tagged", summary.retagged),
        ("removed", summary.removed),
        ("not media", summary.ignored),
        ("failed", len(summary.failed)),
    ):
        table.add_row(label, str(value))
    if len(summary.embedded) > 1:  # several backends: what each embedded (one adding itself embeds more)
        for name, count in summary.embedded.items():
            table.add_row(f"embedded by {name}", str(count))
    if summary.ray_nodes:  # a --ray run: on how many nodes its files were embedded
        table.add_row("embedded on Ray nodes", str(len(summary.ray_nodes)))
    for modality, count in summary.counts.items():
        table.add_row(f"{modality} in index", str(count))
    out.print(table)
    for name, rows in summary.metadata_added.items():  # an index made before the metadata columns
        out.print(
            f"table {name}: metadata columns added ({rows} rows filled from the files' headers, "
            "nothing re-embedded); --where filters on them now work",
            markup=False,
        )
    for name, meta in summary.indexes.items():
        p = meta["params"]
        out.print(f"FAISS {name}: {p['n']} vectors, {faiss_summary(p)}")
    if summary.failed:
        again = (
            f" ({summary.failed_before} unchanged since an earlier run: --retry-failed)"
            if summary.failed_before
            else ""
        )
        err.print(f"[yellow]{len(summary.failed)} file(s) could not be indexed{again}:[/]")
        for path, reason in summary.failed:
            err.print(f"  {printable(path)}: {reason}", markup=False, highlight=False, soft_wrap=True)  # one line each


def register(app: typer.Typer) -> None:
    app.command("index")(index_command)
