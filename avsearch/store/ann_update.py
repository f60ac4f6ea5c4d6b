"""Incremental updates of an index with its vectors on disk (issue 26, goal 2): the rows a table gained,
lost or changed since the build go into (or out of) the IVF lists, without re-encoding the others.

One pass over the table in chunks: a row whose path the index holds with the same vector stays; a new
path, or a known path whose vector changed, is added under a new id (its vector appended to the vectors
file, which readers of the previous build read only below their own row count; or, where the vectors are
the table's, each id's row position at the new version recorded, and a changed vector told by its
fingerprint, since the previous version may be gone); ids whose path is gone
or whose vector changed are removed from the lists and their path emptied in the paths list, so an id
is never reused. The tuned nprobe and k_factor stay: once the rows changed since tuning outnumber the
rows tuned on, the caller builds anew (and tunes) instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Protocol

import numpy as np

from avsearch.lazy_import import lazy_module
from avsearch.store.ann import AnnParams
from avsearch.store.ann_coarse import exact_lists
from avsearch.store.ann_disk import DiskRefine
from avsearch.store.ann_table_vectors import GONE_POSITION, TableVectors, fingerprints

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)

log = logging.getLogger(__name__)

GONE = ""  # the path of an id removed by an update (no file has an empty path)
CHANGED_KEY = "rows_changed_since_tuning"
TUNED_N_KEY = "rows_at_tuning"


class PathChunkSource(Protocol):
    def path_chunks(self) -> Iterator[tuple[list[str], np.ndarray]]:
        """(paths, (rows, dim) float32) chunks covering the table once, in row order."""
        ...

    def table_vectors(self, positions: np.ndarray | None = None, hashes: np.ndarray | None = None) -> TableVectors:
        """The column read (for an index whose vectors are the table's), id -> row position `positions`."""
        ...


def update_in_place(
    index: DiskRefine, params: AnnParams, paths: list[str], source: PathChunkSource
) -> tuple[DiskRefine, AnnParams, list[str]] | None:
    """Bring `index` (built as params over `paths`) up to the table read from `source`: (index, params,
    paths) updated, or None when the changes since tuning outnumber the rows tuned on (build anew; the
    index has then been changed and must be reset, as build_streamed's `trained` does)."""
    position = {p: i for i, p in enumerate(paths) if p != GONE}
    seen = np.zeros(len(paths), bool)
    stale: list[np.ndarray] = []
    out = list(paths)
    added = 0
    in_table = isinstance(index.vectors, TableVectors)
    if in_table:  # where each id's row now lies, and what its vector's fingerprint is
        old_marks = index.vectors.hashes()
        at = np.full(len(paths), GONE_POSITION, np.int64)
        at_new: list[np.ndarray] = []
        marks_new: list[np.ndarray] = []
    offset = 0
    for chunk_paths, matrix in source.path_chunks():
        here = np.arange(offset, offset + len(matrix), dtype=np.int64)  # row positions at the new version
        offset += len(matrix)
        marks = fingerprints(matrix) if in_table else None
        ids = np.array([position.get(p, -1) for p in chunk_paths], np.int64)
        known = ids >= 0
        seen[ids[known]] = True
        fresh = ~known
        if known.any():
            if in_table:  # the previous version's rows are not read (a compaction may have removed them)
                same = old_marks[ids[known]] == marks[known]
            else:
                same = (index.vectors.take(ids[known]) == matrix[known]).all(axis=1)
            changed = np.flatnonzero(known)[~same]
            stale.append(ids[changed])
            fresh[changed] = True
            if in_table:
                kept = np.flatnonzero(known)[same]
                at[ids[kept]] = here[kept]
        if fresh.any():
            rows = np.ascontiguousarray(matrix[fresh], np.float32)
            new_ids = np.arange(len(out), len(out) + len(rows), dtype=np.int64)
            with exact_lists(index.base):  # never filed through an HNSW coarse quantizer's graph
                index.base.add_with_ids(rows, new_ids)
            if in_table:
                at_new.append(here[fresh])
                marks_new.append(marks[fresh])
            else:
                index.vectors.append(rows)
            out.extend(p for p, f in zip(chunk_paths, fresh, strict=True) if f)
            added += len(rows)
    if in_table:
        index.vectors = source.table_vectors(np.concatenate([at, *at_new]), np.concatenate([old_marks, *marks_new]))
    live = np.array([p != GONE for p in paths], bool)
    gone = np.concatenate([np.flatnonzero(live & ~seen), *stale]).astype(np.int64)
    if len(gone):
        index.base.remove_ids(faiss.IDSelectorBatch(gone))
        for g in gone:
            out[g] = GONE
    since = int(params.extra.get(CHANGED_KEY, 0)) + added + len(gone)
    tuned_n = int(params.extra.get(TUNED_N_KEY, params.n))
    if since > tuned_n:
        log.info("%d rows changed since tuning over %d: building anew", since, tuned_n)
        return None
    extra = {**params.extra, CHANGED_KEY: since, TUNED_N_KEY: tuned_n}
    updated = replace(params, n=int(index.base.ntotal), extra=extra)
    log.info("updated in place: %d rows added, %d removed (%d changed since tuning)", added, len(gone), since)
    return index, updated, out
