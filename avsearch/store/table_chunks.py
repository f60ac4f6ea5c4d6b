"""One vector column of an index table read in chunks of rows (a ChunkSource for store/ann_stream.py and
store/ann_update.py), so a column larger than memory is never held whole."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from avsearch.store.ann_table_vectors import TableVectors
from avsearch.store.table_rows import row_names
from avsearch.store.tables import MediaStore


class TableChunks:
    """A modality's vector column at one table version, in scan order; each pass also collects the paths."""

    def __init__(self, store: MediaStore, modality: str, column: str, version: int, n: int, rows: int) -> None:
        self.store, self.modality, self.column, self.version = store, modality, column, version
        self.n, self.dim, self.rows = n, store.dim(modality, column), rows
        self.paths: list[str] = []

    def chunks(self) -> Iterator[np.ndarray]:
        self.paths = []
        for paths, matrix in self.path_chunks():
            self.paths.extend(paths)
            yield matrix

    def path_chunks(self) -> Iterator[tuple[list[str], np.ndarray]]:
        """(paths, (<= rows, dim) float32) batch by batch, at most one batch read ahead."""
        dataset = self.store._at(self.modality, self.version).to_lance()  # the version the index is built from
        timed = [c for c in ("start", "end") if c in dataset.schema.names]  # moments: named with their times
        batches = dataset.to_batches(
            columns=["path_bytes", *timed, self.column],
            batch_size=self.rows,
            batch_readahead=1,
            fragment_readahead=1,
            scan_in_order=True,
        )
        for batch in batches:
            flat = batch.column(self.column).flatten().to_numpy(zero_copy_only=False)
            paths = row_names(batch)  # a moment's row is named with its times (table_schema.py row_ref)
            yield paths, np.ascontiguousarray(flat.reshape(-1, self.dim), dtype=np.float32)

    def table_vectors(self, positions: np.ndarray | None = None, hashes: np.ndarray | None = None) -> TableVectors:
        """This column at this version as an index's re-ranking vectors (ids -> rows `positions`, None: row
        i is id i), opened on the first read."""
        rows = self.n if positions is None else len(positions)
        store, modality, version = self.store, self.modality, self.version
        return TableVectors(
            lambda: store.lance_at(modality, version), version, self.column, self.dim, rows, positions, hashes
        )
