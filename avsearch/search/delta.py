"""Rows a table gained or lost since its FAISS index was built: what a search adds to (and drops from)
the FAISS answer while an index run is under way (or after one was killed), so that it stays fast
instead of scanning every vector.

Rows added since are scored exactly; rows deleted since are dropped from the FAISS hits. A row whose file
changed in place keeps its old vector until the run ends and the FAISS index is rebuilt.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from avsearch.store.ann_files import LoadedAnn
from avsearch.store.table_schema import row_ref, split_ref
from avsearch.store.tables import MediaStore


@dataclass(frozen=True)
class Delta:
    version: int  # the table version it describes
    paths: list[str]  # rows added since the FAISS index's version (row names: store/table_schema.py row_ref)
    vectors: np.ndarray  # (len(paths), d): their vectors in the route's column
    gone: frozenset[str]  # FAISS rows deleted since


class DeltaRows:
    """Per (FAISS index, table version) deltas, each computed once (the last few are kept)."""

    def __init__(self, store: MediaStore, keep: int = 8) -> None:
        self.store, self.keep = store, keep
        self._cache: dict[tuple[str, str, int, int], Delta] = {}
        self._lock = threading.Lock()  # concurrent searches: each delta computed once, the cache kept whole

    def of(self, modality: str, column: str, ann: LoadedAnn, version: int) -> Delta:
        with self._lock:
            return self._of(modality, column, ann, version)

    def _of(self, modality: str, column: str, ann: LoadedAnn, version: int) -> Delta:
        key = (modality, column, id(ann), version)
        if key not in self._cache:
            _, path_bytes = self.store.row_ids(modality, version)
            current = [os.fsdecode(b) for b in path_bytes.to_pylist()]
            indexed = set(ann.paths)
            added = [p for p in current if p not in indexed]  # row names: a moment's carry its times
            files = sorted({split_ref(p)[0] for p in added})
            records, vectors = self.store.fetch(modality, files) if files else ([], {})
            width = self.store.dim(modality, column)
            names = [row_ref(r.path, r.start, r.end) for r in records]
            new = set(added)
            keep = [i for i, name in enumerate(names) if name in new]  # a file's moments indexed before stay out
            self._cache[key] = Delta(
                version,
                [names[i] for i in keep],
                vectors.get(column, np.zeros((0, width), np.float32))[keep],
                frozenset(indexed - set(current)),
            )
            while len(self._cache) > self.keep:
                self._cache.pop(next(iter(self._cache)))
        return self._cache[key]
