"""`avsearch info`: what an index holds."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from avsearch.cli.common import IndexDirOption, StorageOption, err, faiss_summary, index_location, out, user_errors
from avsearch.media.walk import printable


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@user_errors
def info_command(
    index_dir: IndexDirOption = None,
    storage_option: StorageOption = None,
) -> None:
    """Counts per modality, file sizes, encoders, the bridge and the FAISS index of each table."""
    from avsearch.settings import load_settings
    from avsearch.store.index import Index
    from avsearch.store.torch_search import planned_engine

    info = Index.open(index_location(index_dir, storage_option)).describe()
    m = info.manifest
    out.print(f"index      {info.index_dir} ({_mb(info.disk_bytes)} on disk, schema v{m.schema_version})")
    for b in m.bridges.values():
        out.print(f"bridge     {b.name} ({b.fingerprint}, {' <-> '.join(b.spaces)}) {b.path}")
    out.print(f"roots      {', '.join(map(printable, m.roots)) or '-'}")
    out.print(f"updated    {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(m.updated))}")
    out.print(f"search     {planned_engine(load_settings().device)}")
    table = Table()
    for column in ("modality", "files", "moments", "size", "encoder", "vectors", "FAISS index"):
        table.add_column(column)
    for mi in info.modalities:
        columns = {"native": mi.native_dim, **mi.shared}
        cells = []
        for column, dim in columns.items():
            p = mi.indexes.get(column)
            kind = "-" if p is None else faiss_summary(p)
            stale = " (stale: run avsearch index)" if p is not None and p["stale"] else ""
            cells.append((f"{column} ({dim})", kind + stale))
        table.add_row(
            mi.modality,
            str(mi.files),
            str(mi.moments),  # a video's frames and sound segments, a long recording's segments
            _mb(mi.bytes),
            f"{mi.encoder}\n{(mi.encoder_fingerprint or 'not yet used').rsplit(':', 1)[-1]}",
            "\n".join(c for c, _ in cells),
            "\n".join(k for _, k in cells),
        )
    out.print(table)
    if info.failed:
        err.print(
            f"[yellow]{len(info.failed)} file(s) could not be indexed[/] (`avsearch index --retry-failed` tries again):"
        )
        for path, failed in info.failed.items():
            err.print(f"  {printable(path)}: {failed.reason}", markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("info")(info_command)
