"""Row selection: which rows of one table version pass a SearchFilters, as positions in a row list (a
FAISS index's paths, or an exact scan's), for FAISS ID selectors and pre-filtered exact search."""

from __future__ import annotations

import fnmatch
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from avsearch.search.filters import SearchFilters
from avsearch.store.path_list import PathList
from avsearch.store.tables import MediaStore


def glob_positions(paths: list[str], glob: str) -> np.ndarray:
    """Positions (int64) of the paths matching an fnmatch pattern (a moment's row name by its path part:
    store/table_schema.py row_ref)."""
    return np.array([i for i, p in enumerate(paths) if fnmatch.fnmatch(p.partition("\x00")[0], glob)], dtype=np.int64)


class RowSelector:
    """Which rows pass SearchFilters, as positions in a row list (a FAISS index's paths, or the paths of
    an exact scan) of one table version. The `where` part runs in LanceDB on the table pinned at that
    version and comes back as Lance row ids, mapped to positions through a per-version map built once;
    recent results are cached, so repeated queries with one filter skip the scan."""

    def __init__(self, store: MediaStore, cache_size: int = 8) -> None:
        self.store = store
        self.cache_size = cache_size
        self._map: dict[str, tuple[tuple[int, int], list[str], np.ndarray, np.ndarray]] = {}
        # (modality, version, id(paths), filters) -> (paths, positions); holding `paths` keeps its id unique
        self._cache: OrderedDict[tuple[Any, ...], tuple[list[str], np.ndarray | None]] = OrderedDict()
        self._lock = threading.Lock()

    def positions(
        self, modality: str, paths: list[str], version: int, filters: SearchFilters | None
    ) -> np.ndarray | None:
        """Sorted int64 positions in `paths` (the rows of `modality`'s table at `version`) that pass
        `filters`; None when there is no filter."""
        if filters is None or not filters.active:
            return None
        key = (modality, version, id(paths), filters)
        with self._lock:  # concurrent searches: the LRU order is one structure
            if key in self._cache and self._cache[key][0] is paths:
                self._cache.move_to_end(key)
                return self._cache[key][1]
        keep = None
        if filters.parsed is not None:
            predicate = filters.predicate(modality, self.store.columns(modality))
            keep = self._where(modality, paths, version, predicate or "true")
        if filters.path_glob is not None:
            matched = glob_positions(paths, filters.path_glob)
            keep = matched if keep is None else np.intersect1d(keep, matched, assume_unique=True)
        with self._lock:
            self._cache[key] = (paths, keep)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return keep

    def _where(self, modality: str, paths: list[str], version: int, predicate: str) -> np.ndarray:
        rowids = self.store.filter_rows(modality, predicate, version)
        sorted_ids, positions = self._row_map(modality, paths, version)
        at = np.searchsorted(sorted_ids, rowids)
        found = at < len(sorted_ids)
        found[found] &= sorted_ids[at[found]] == rowids[found]
        out = positions[at[found]]
        return np.sort(out[out >= 0])

    def _row_map(self, modality: str, paths: list[str], version: int) -> tuple[np.ndarray, np.ndarray]:
        """(Lance row ids sorted, the position in `paths` of each; -1 for a row not in `paths`)."""
        cached = self._map.get(modality)
        if cached is None or cached[0] != (version, id(paths)) or cached[1] is not paths:
            rowids, path_bytes = self.store.row_ids(modality, version)
            names = paths.names if isinstance(paths, PathList) else None  # a build's, as read: no re-encoding
            wanted = names if names is not None else pa.array([os.fsencode(p) for p in paths], pa.binary())
            positions = pc.index_in(path_bytes, value_set=wanted).fill_null(-1).to_numpy().astype(np.int64)
            order = np.argsort(rowids, kind="stable")
            cached = ((version, id(paths)), paths, rowids[order], positions[order])
            self._map[modality] = cached
        return cached[2], cached[3]
