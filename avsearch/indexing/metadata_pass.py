"""The metadata-only pass: tables made before the metadata columns (store/table_schema.py META_FIELDS) get them
on the next `avsearch index`, without re-embedding and without loading any encoder.

Each row is filled from what an index run knows without a model: its file's header (media/metadata.py
read_media_info: duration, sample rate, picture size, point count), its folder and extension against the
indexed root holding it, and its tags from the run's sidecar. Index.add_missing_columns writes each table's
columns in one Lance commit that rewrites nothing else (keys, vectors and FAISS builds stay valid). A row
under another root of the index takes its folder from that root and its tags from the next run over it; a
file gone or changed since keeps what its header says now, until the run's plan removes or re-embeds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from avsearch.indexing.plan import under
from avsearch.indexing.progress import Progress
from avsearch.media.metadata import FileMeta, MediaInfo, path_fields, read_media_info
from avsearch.store.index import Index
from avsearch.store.table_rows import meta_columns
from avsearch.store.table_schema import META_FIELDS

log = logging.getLogger(__name__)

Describe = Callable[[str, MediaInfo], FileMeta]  # the run's metadata of a path under its root


def add_metadata_columns(index: Index, root: Path, describe: Describe, progress: Progress) -> dict[str, int]:
    """Add and fill the metadata columns of every table of `index` that lacks them (root and describe: the
    run's root and its metadata of a path under it); returns table -> rows filled."""
    present = set(index.tables.modalities())
    roots = sorted({Path(r) for r in index.manifest.roots} | {root}, key=lambda r: len(str(r)), reverse=True)
    filled: dict[str, int] = {}
    for table in index.manifest.modalities:
        if table not in present or {f.name for f in META_FIELDS} <= set(index.tables.columns(table)):
            continue
        kind, stage = index.manifest.kind(table), f"metadata {table}"
        progress.start(stage, index.tables.count(table))

        def fill(paths: list[str], kind: str = kind, stage: str = stage) -> dict[str, pa.Array]:
            # the rows of one file (a video's moments) share its metadata: its header is read once a batch
            metas = {p: _meta(p, read_media_info(p, kind), root, roots, describe) for p in set(paths)}
            progress.advance(stage, len(paths))
            return meta_columns([metas[p] for p in paths])

        if index.add_missing_columns(table, META_FIELDS, fill):
            filled[table] = index.tables.count(table)
            log.info("table %s: metadata columns added to %d rows, no re-embedding", table, filled[table])
        progress.finish(stage)
    return filled


def _meta(path: str, info: MediaInfo, root: Path, roots: list[Path], describe: Describe) -> FileMeta:
    """A row's metadata: the run's for a path under its root, else against the deepest index root holding it."""
    if under(path, str(root)):
        return describe(path, info)
    own = next((r for r in roots if under(path, str(r))), Path(path).parent)
    folder, ext = path_fields(path, own)
    return FileMeta(folder if own in roots else None, ext, (), info)
