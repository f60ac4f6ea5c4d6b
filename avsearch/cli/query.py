"""`avsearch query`: search an index with a sound, a picture or a text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.columns import Columns
from rich.console import Group
from rich.table import Table

from avsearch.cli.common import (
    DeviceOption,
    IndexDirOption,
    StorageOption,
    WeightsDirOption,
    err,
    index_location,
    out,
    user_errors,
)
from avsearch.media.walk import printable

if TYPE_CHECKING:
    from avsearch.search.results import Hit, ResultSet
    from avsearch.store.index import Index


@user_errors
def query_command(
    audio: Annotated[Path | None, typer.Option("--audio", help="Query with this sound file.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Query with this picture.")] = None,
    pointcloud: Annotated[
        Path | None, typer.Option("--pointcloud", help="Query with this point cloud (.ply, .npy, .xyz, ...).")
    ] = None,
    text: Annotated[str | None, typer.Option("--text", help="Query with this text.")] = None,
    video: Annotated[
        Path | None, typer.Option("--video", help="Query with this video: its sound and its frames (see --from).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--from", help="With --video: query with its sound only ('audio') or its frames ('frames')."),
    ] = None,
    start: Annotated[
        float | None, typer.Option("--start", help="With --audio or --video: from this many seconds in.")
    ] = None,
    end: Annotated[
        float | None, typer.Option("--end", help="With --audio or --video: up to this many seconds in.")
    ] = None,
    item: Annotated[
        str | None,
        typer.Option("--id", help="More like this indexed item: its path or id as results print it (no model loads)."),
    ] = None,
    target: Annotated[str, typer.Option("--target", help="What to find: image, audio, pointcloud or all.")] = "all",
    k: Annotated[int, typer.Option("-k", min=1, help="Results per target.")] = 10,
    glob: Annotated[
        str | None, typer.Option("--glob", help="Only paths matching this pattern, e.g. '*/birds/*'.")
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            help=(
                "Only rows passing this filter, e.g. \"duration > 5 and folder = 'field'\". Columns: modality, "
                "path, folder (relative to the indexed root), ext, size (bytes), mtime (ISO date/time, local), "
                "duration (s), sample_rate, width, height, points, tag (tag = 'bird', tag IN ('a','b')). "
                "Operators: = != < <= > >= IN LIKE BETWEEN IS [NOT] NULL AND OR NOT, parentheses; strings "
                "in single quotes."
            ),
        ),
    ] = None,
    ext: Annotated[
        list[str] | None, typer.Option("--ext", help="Only files with this extension (repeat: any of them).")
    ] = None,
    folder: Annotated[
        str | None, typer.Option("--folder", help="Only files in this folder or below it (relative to the root).")
    ] = None,
    min_duration: Annotated[
        float | None, typer.Option("--min-duration", help="Only sounds at least this many seconds long.")
    ] = None,
    max_duration: Annotated[
        float | None, typer.Option("--max-duration", help="Only sounds at most this many seconds long.")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only files with this tag (repeat: all of them).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only files modified at or after this date/time (2026-01-31).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only files modified up to this date (through its end) or time.")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help=(
                "cmcr (C-MCR bridges), cavmae (CAV-MAE: audio <-> image only) or both (the two lists of each "
                "target side by side). Default: configs/backends.toml (cmcr). Text takes C-MCR only."
            ),
        ),
    ] = None,
    min_score: Annotated[
        str | None,
        typer.Option(
            "--min-score",
            help=(
                "Drop hits scoring below this: a number, or 'auto' (below the bridge's calibrated level where a "
                "hit is more likely related than not; lists without a calibration keep every hit)."
            ),
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON (for scripts).")] = False,
    paths_only: Annotated[bool, typer.Option("--paths-only", help="Print only the paths, one a line.")] = False,
    html_out: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the results as one self-contained page (thumbnails inline)."),
    ] = None,
    index_dir: IndexDirOption = None,
    storage_option: StorageOption = None,
    weights_dir: WeightsDirOption = None,
    device: DeviceOption = None,
) -> None:
    """Find images, sounds and 3D shapes: audio<->image and image<->3D through the bridges, text->image
    in CLIP's space, text->audio in CLAP's, text->3D through CLIP text and the 3D bridge, and
    same-modality queries in their own spaces.

    Scores are cosine similarities; they compare within one target's list, not across targets. Filters
    (--glob, --where and the shortcuts) all hold together; filtered results are those of a search over
    the rows that pass.
    """
    from avsearch.search.filters import SearchFilters
    from avsearch.search.query import query
    from avsearch.search.results import apply_min_score, parse_min_score
    from avsearch.settings import load_settings
    from avsearch.store.index import Index

    filters = SearchFilters(
        path_glob=glob,
        where=where,
        ext=tuple(ext or ()),
        folder=folder,
        min_duration=min_duration,
        max_duration=max_duration,
        tags=tuple(tag or ()),
        since=since,
        until=until,
    )
    cut = parse_min_score(min_score)
    settings = load_settings()
    from avsearch.encoders.registry import use_onnx

    use_onnx()  # exported towers answer on ONNX Runtime: a cold query imports no torch (encoders/onnx_towers.py)
    index = Index.open(
        index_location(index_dir, storage_option),
        weights_dir=weights_dir or settings.weights_dir,
        device=device or settings.device,
    )
    results = query(
        index,
        audio=audio,
        image=image,
        pointcloud=pointcloud,
        text=text,
        item=item,
        target=target,
        k=k,
        filters=filters if filters.active else None,
        backend=backend,
        video=video,
        start=start,
        end=end,
        source=source,
    )
    note = _backend_note(index, backend, audio, image, pointcloud, text, item)
    if note:
        err.print(note, markup=False, highlight=False)
    if apply_min_score(results, cut):
        lists = ", ".join(f"{r.query_modality} -> {r.target}" for r in results if r.calibration is None and r.hits)
        err.print(f"--min-score auto: {lists} uncalibrated (no bridge calibration): every hit kept", highlight=False)

    if html_out is not None:
        from avsearch.search.html_report import write_html_report

        label = text if text is not None else item if item is not None else str(audio or image or pointcloud or video)
        written = write_html_report(results, html_out, printable(label))
        if not (as_json or paths_only):
            out.print(f"results page: {printable(str(written))}")
    if as_json:
        out.print_json(json.dumps([r.to_dict() for r in results]))
        return
    if paths_only:
        from avsearch.search.moments import fragment

        for r in results:
            for hit in r.hits:
                typer.echo(fragment(printable(hit.path), hit.start, hit.end))  # a moment: path#t=83.0,93.0
        return
    backends = {r.backend for r in results}
    tables = [_table(r, len(backends) > 1) for r in results]
    if len(backends) < 2:
        for table in tables:
            out.print(table)
        return
    # both backends: each target's lists side by side (C-MCR left), so the two rankings read across
    pairs: dict[str, list[Table]] = {}
    for r, table in zip(results, tables, strict=True):
        pairs.setdefault(r.target, []).append(table)
    for row in pairs.values():
        out.print(Columns(row) if out.width >= 120 else Group(*row))


def _table(r: ResultSet, with_backend: bool) -> Table:
    """One result list as a table; titled with its backend when several are shown."""
    label = f"{r.backend}: " if with_backend else ""
    table = Table(title=f"{label}{r.query_modality} -> {r.target} ({r.space}, {r.index_kind})")
    calibrated = r.calibration is not None
    columns = (("#", "right"), ("score", "right")) + ((("p", "right"),) if calibrated else ()) + (("path", "left"),)
    for column, justify in columns:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for hit in r.hits:
        p = (f"{hit.probability:.2f}",) if calibrated and hit.probability is not None else ("",) * calibrated
        table.add_row(str(hit.rank), f"{hit.score:.3f}", *p, _where(hit))
    if not r.hits:
        table.add_row(
            *[""] * (len(columns) - 1), f"(no {r.target} {'above --min-score' if r.weaker else 'in this index'})"
        )
    table.caption = _caption(r)
    return table


def _where(hit: Hit) -> str:
    """A hit's path, and for a moment its range (`walk.mp4  01:23-01:33`) and how many more of its file."""
    if hit.start is None or hit.end is None:
        return printable(hit.path)
    from avsearch.search.moments import clock

    more = f"  (+{hit.more} more)" if hit.more else ""
    return f"{printable(hit.path)}  {clock(hit.start, hit.end)}{more}"


def _caption(r: ResultSet) -> str:
    """Whether the scores are calibrated (and from what), and how many hits a minimum score dropped."""
    if r.calibration is None:
        text = "scores uncalibrated: they rank this list, they do not say whether a hit is related"
    else:
        text = f"p: chance the hit belongs with the query, calibrated from {r.calibration['source']}"
    return text + (f"; {r.weaker} weaker hits hidden" if r.weaker else "")


def _backend_note(index: Index, backend: str | None, *given: object) -> str | None:
    """The one line saying why `--backend both` shows C-MCR's lists only (text; a 3D shape)."""
    from avsearch.search.planner import backend_note

    kinds = ("audio", "image", "pointcloud", "text", None)
    kind = next((k for k, v in zip(kinds, given, strict=True) if v is not None), None)
    return backend_note(kind, backend, index.manifest) if kind is not None else None


def register(app: typer.Typer) -> None:
    app.command("query")(query_command)
