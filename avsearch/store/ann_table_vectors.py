"""Full vectors for exact re-ranking read by row from the index table itself (issue 26, goal 2).

A streamed build's re-ranking reads k x k_factor full vectors per query. ann_disk.VectorFile keeps a copy
of the column beside the index for that: 20 GB more at 10M x 512, for each vector column. `TableVectors`
reads the same rows from the table's column as of the version the build (or its last in-place update)
read, by row position (Lance `take`: positions in scan order of that version, so ids stay valid however
the table moves on), and needs no second copy on disk.

id -> position: the identity after a fresh build; after an in-place update (ann_update.py) a stored
array (ids whose row is gone: -1), since deletions and compactions move the rows that stay. The update
finds rows whose vector changed from a 64-bit fingerprint per id (`fingerprints`) instead of reading the
previous version, which the run's compaction may have cleaned up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.errors import DamagedIndexError
from avsearch.store.ann_disk import distinct_rows, in_asked_order

GONE_POSITION = -1
_MIX = np.random.default_rng(20261207).integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)


def fingerprints(matrix: np.ndarray) -> np.ndarray:
    """A 64-bit fingerprint of each row's float32 bytes (a random odd-weighted sum mod 2**64: two different
    rows collide with probability about 2**-64), for telling changed vectors from unchanged ones."""
    m = np.ascontiguousarray(matrix, np.float32)
    words = m.view(np.uint32).astype(np.uint64)  # (rows, dim) words, exact
    with np.errstate(over="ignore"):
        return (words * _MIX[: m.shape[1]]).sum(axis=1, dtype=np.uint64)


class TableVectors:
    """The vectors of ids 0..rows-1, read from one vector column of a table at one version.

    open_table: the Lance dataset at that version (called once, on the first read, so an index whose
    version was cleaned up can still be loaded to be updated: its rows are then never read).
    positions: id -> row position at that version (None: the identity); hashes_file: the fingerprints of
    the ids' vectors (read by in-place updates only)."""

    def __init__(
        self,
        open_table: Callable[[], Any],
        version: int,
        column: str,
        dim: int,
        rows: int,
        positions: np.ndarray | None = None,
        hashes: np.ndarray | None = None,
        hashes_file: Path | None = None,
    ) -> None:
        self.open_table, self.version, self.column, self.dim = open_table, int(version), column, dim
        self._rows, self.positions = int(rows), positions
        self._hashes, self.hashes_file = hashes, hashes_file
        self._dataset: Any = None

    @property
    def rows(self) -> int:
        return self._rows

    def __len__(self) -> int:
        return self._rows

    def hashes(self) -> np.ndarray:
        """The fingerprint of each id's vector (ann_update compares a row's against it)."""
        if self._hashes is None:
            if self.hashes_file is None:
                raise DamagedIndexError(f"vectors of table version {self.version}: no fingerprints recorded")
            self._hashes = np.load(self.hashes_file, allow_pickle=False)
        return self._hashes

    def open(self) -> None:
        """Open the table at the version (DamagedIndexError, from the store, when it is gone)."""
        if self._dataset is None:
            self._dataset = self.open_table()

    def record_fingerprints(self, hashes: np.ndarray) -> None:
        """The fingerprints of ids 0..rows-1 (a build's pass computed them)."""
        if len(hashes) != self._rows:
            raise ValueError(f"{len(hashes)} fingerprints for {self._rows} ids")
        self._hashes = np.asarray(hashes, np.uint64)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of the given ids (any order, repeats allowed): one Lance take of their rows."""
        unique, back = distinct_rows(rows, self._rows, f"table version {self.version}")
        at = unique if self.positions is None else np.asarray(self.positions[unique], np.int64)
        if len(at) and at.min() < 0:
            raise IndexError(f"ids {unique[at < 0][:5].tolist()} have no row at table version {self.version}")
        self.open()
        if not len(at):
            return np.zeros((0, self.dim), np.float32)
        # positions ascending: Lance reads each data file's rows in order (the ids were sorted above)
        order = np.argsort(at, kind="stable")
        try:
            table = self._dataset.take(at[order], columns=[self.column])
        except (OSError, RuntimeError) as exc:  # Lance: a data file of the version was cleaned up since
            raise DamagedIndexError(
                f"table version {self.version} is no longer readable ({str(exc).splitlines()[0][:200]}); "
                "`avsearch index` brings the FAISS index up to date"
            ) from exc
        flat = table.column(self.column).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        got = np.empty((len(at), self.dim), np.float32)
        got[order] = flat.reshape(len(at), self.dim)
        return in_asked_order(got, back)
