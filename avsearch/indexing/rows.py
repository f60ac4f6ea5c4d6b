"""The rows an index run writes: a file's (or a moment's) record stamped with the encoder's and bridges'
fingerprints, its filterable metadata (path fields against the run's root, tags from the run's sidecar,
the header's media info) and every vector column of its table. Local runs (pipeline.py) and Ray workers
(ray_embed.py) both make their rows here."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avsearch.embedding.models import Models
from avsearch.indexing.moments import WHOLE, Span
from avsearch.indexing.plan import Item
from avsearch.media.metadata import FileMeta, MediaInfo, path_fields, read_media_info, read_tags, relative_key
from avsearch.store.table_schema import FileRecord

log = logging.getLogger(__name__)


class Describer:
    """FileMeta for the rows of one run: path fields against the root, tags from the run's sidecar."""

    def __init__(self, root: Path, sidecar: Path | None) -> None:
        self.root = root
        self.tags = read_tags(sidecar) if sidecar is not None else {}
        if sidecar is not None:
            log.info("tags: %d paths from %s", len(self.tags), sidecar)

    def __call__(self, path: str, info: MediaInfo) -> FileMeta:
        folder, ext = path_fields(path, self.root)
        return FileMeta(folder, ext, self.tags.get(relative_key(path, self.root), ()), info)

    def stale(self, record: FileRecord) -> bool:
        """Whether a stored row's tags or folder differ from this run's (its content being unchanged)."""
        if record.meta is None:  # a table made before metadata columns: nothing to rewrite into
            return False
        fresh = self(record.path, record.meta.info)
        return (fresh.tags, fresh.folder) != (record.meta.tags, record.meta.folder)


def embedded_rows(
    models: Models,
    table: str,
    items: Sequence[Item],
    native: np.ndarray,
    describe: Describer,
    with_meta: bool,
    spans: Sequence[Sequence[Span]] | None = None,
) -> tuple[list[FileRecord], dict[str, np.ndarray]]:
    """The rows of freshly embedded files (`native`: their vectors (N, d), in the order of `items`, and of
    each item's `spans` when given: a row per moment): records stamped with the encoder's and bridges'
    fingerprints, and every vector column of the table (column -> (N, width)). Local and Ray runs
    (ray_embed.py) both make their rows here."""
    entry = models.manifest.modalities[table]
    stamp = models.manifest.bridge_stamp(table)
    track = models.manifest.kind(table)
    records = []
    for it, times in zip(items, spans if spans is not None else [[WHOLE]] * len(items), strict=True):
        meta = new_metadata(it, describe, with_meta) if times else None
        records += [file_record(it, entry.encoder_fingerprint or "", stamp, meta, span, track) for span in times]
    return records, models.all_vectors(table, native)


def new_metadata(item: Item, describe: Describer, with_meta: bool) -> FileMeta | None:
    """A new file's metadata: headers read only when its table has the columns to keep them."""
    return describe(item.file.path, read_media_info(item.file.path, item.modality)) if with_meta else None


def stored_info(record: FileRecord) -> MediaInfo:
    return record.meta.info if record.meta is not None else MediaInfo()


def file_record(
    item: Item, encoder: str, bridge: str, meta: FileMeta | None, span: Span = WHOLE, track: str | None = None
) -> FileRecord:
    """`track`: the file modality of the table the row goes to (part of a moment's key)."""
    f = item.file
    track = track if span[0] is not None else None
    return FileRecord(f.path, f.size, f.mtime_ns, item.hash, encoder, bridge, meta, *span, track)
