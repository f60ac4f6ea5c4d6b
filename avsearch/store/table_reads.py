"""A store's reads: Lance datasets pinned to a version, searched by column, key or filter."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from avsearch.store.lance_read import TableReader, open_dataset
from avsearch.store.location import Location
from avsearch.store.manifest import table_modality
from avsearch.store.table_errors import damage_named
from avsearch.store.table_rows import (
    IN_CHUNK,
    chunks,
    key_prefixes,
    keys_in,
    matrix_of,
    record_of,
    ref_bytes,
    row_names,
)
from avsearch.store.table_schema import (
    BOOK_COLUMNS,
    LANCE_SUFFIX,
    META_COLUMNS,
    MOMENT_FIELDS,
    NATIVE,
    SHARED_PREFIX,
    TABLES_DIR,
    FileRecord,
)


class TableReads:
    """The reading half of MediaStore (store/tables.py), which sets these attributes."""

    location: Location
    index_dir: Path | str
    # Reads go through Lance datasets (store/lance_read.py), each pinned to a version: the newest,
    # checked on every read (another process, an index run, may have committed), or a FAISS index's.
    _readers: dict[str, TableReader]
    _pinned: dict[tuple[str, int], TableReader]  # (modality, version) -> table
    _read_lock: threading.Lock

    def _reader(self, modality: str) -> TableReader:
        """The table as of its newest commit, for reading."""
        with self._read_lock:
            reader = self._readers.get(modality)
        if reader is None:
            uri = self.location.join(TABLES_DIR, f"{modality}{LANCE_SUFFIX}")
            reader = TableReader(open_dataset(uri, storage_options=self.location.lance_options()))
        else:
            reader = reader.latest()
        with self._read_lock:
            self._readers[modality] = reader
        return reader

    @damage_named
    def vector_columns(self, modality: str) -> list[str]:
        """NATIVE first, then the projected columns."""
        names = self._reader(modality).schema.names
        return [NATIVE] + [n for n in names if n.startswith(SHARED_PREFIX)]

    def dim(self, modality: str, column: str) -> int:
        return self._reader(modality).schema.field(column).type.list_size

    @damage_named
    def columns(self, modality: str) -> list[str]:
        """The table's column names (an index made before metadata filters lacks META_COLUMNS)."""
        return list(self._reader(modality).schema.names)

    def _book(self, modality: str) -> list[str]:
        """Bookkeeping columns to read: BOOK_COLUMNS plus the metadata and moment columns the table has."""
        names = set(self._reader(modality).schema.names)
        moments = [f.name for f in MOMENT_FIELDS if f.name in names]
        return list(BOOK_COLUMNS) + [c for c in META_COLUMNS if c in names] + moments

    def has_moments(self, modality: str) -> bool:
        """Whether the table has the moment columns (tables made before videos do not)."""
        return "file_key" in self._reader(modality).schema.names

    def _timed(self, modality: str, table: TableReader | None = None) -> list[str]:
        """path_bytes plus the moment times where the table has them: what `row_names` names rows from."""
        names = (table or self._reader(modality)).schema.names
        return ["path_bytes"] + [c for c in ("start", "end") if c in names]

    def _at(self, modality: str, version: int) -> TableReader:
        """The table as of `version` (a FAISS index's), so filters and the index see the same rows."""
        key = (modality, version)
        with self._read_lock:
            pinned = self._pinned.get(key)
        if pinned is None:
            pinned = self._reader(modality).at(version)
            with self._read_lock:
                self._pinned = {k: t for k, t in self._pinned.items() if k[0] != modality}  # one per modality
                self._pinned[key] = pinned
        return pinned

    @damage_named
    def lance_at(self, modality: str, version: int) -> Any:
        """The Lance dataset of a table as of `version` (DamagedIndexError when that version is gone)."""
        return self._at(modality, version).to_lance()

    @damage_named
    def row_ids(self, modality: str, version: int) -> tuple[np.ndarray, pa.Array]:
        """Every row's Lance row id (uint64) and path bytes, at `version`, in scan order."""
        table = self._at(modality, version)
        arrow = table.search().select(self._timed(modality, table)).with_row_id(True).limit(None).to_arrow()
        return arrow.column("_rowid").to_numpy(), ref_bytes(arrow)

    @damage_named
    def filter_rows(self, modality: str, predicate: str, version: int) -> np.ndarray:
        """Lance row ids (uint64) of the rows passing a compiled filter predicate, at `version`."""
        query = self._at(modality, version).search().where(predicate).select(["size"]).with_row_id(True)
        return query.limit(None).to_arrow().column("_rowid").to_numpy()

    @damage_named
    def filtered_vectors(
        self, modality: str, column: str, predicate: str, version: int
    ) -> tuple[list[str], np.ndarray]:
        """Row names (`row_ref`) and one vector column of the rows passing a compiled filter predicate, at
        `version`."""
        table = self._at(modality, version)
        query = table.search().where(predicate).select([*self._timed(modality, table), column])
        arrow = query.limit(None).to_arrow()
        return row_names(arrow), matrix_of(arrow.column(column), self.dim(modality, column))

    @damage_named
    def vectors_at(self, modality: str, column: str, version: int) -> tuple[list[str], np.ndarray]:
        """Every row's name (`row_ref`) and one vector column as of `version`: what a flat FAISS build of
        that version holds (store/exact.py searches them without FAISS)."""
        table = self._at(modality, version)
        arrow = table.search().select([*self._timed(modality, table), column]).limit(None).to_arrow()
        return row_names(arrow), matrix_of(arrow.column(column), self.dim(modality, column))

    @damage_named
    def version(self, modality: str) -> int:
        return int(self._reader(modality).version)

    @damage_named
    def count(self, modality: str) -> int:
        return int(self._reader(modality).count_rows())

    @damage_named
    def bookkeeping(self, modality: str) -> dict[str, FileRecord]:
        """Every row's bookkeeping, keyed by path (no vectors read)."""
        arrow = self._reader(modality).search().select(self._book(modality)).limit(None).to_arrow()
        track = table_modality(modality)
        records = (record_of(r, track) for r in arrow.to_pylist())
        return {r.path: r for r in records}

    @damage_named
    def held_keys(self, modality: str) -> np.ndarray:
        """`key_prefixes` of every row, sorted: the key column read in batches (16 bytes a row, not the
        table's 36-byte strings all at once); what an append of new rows checks its keys against."""
        batches = self._reader(modality).to_lance().to_batches(columns=["key"], batch_size=1 << 16)
        parts = [key_prefixes(b.column("key")) for b in batches]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)

    @damage_named
    def file_rows(self, modality: str) -> dict[str, tuple[int, float | None]]:
        """Each file's size and its row's start (None: a whole-file row), keyed by path, a file's last row
        winning as in `bookkeeping`: three columns read instead of the bookkeeping (`avsearch info`)."""
        reader = self._reader(modality)
        timed = "start" in reader.schema.names
        arrow = reader.search().select(["path_bytes", "size", *(["start"] if timed else [])]).limit(None).to_arrow()
        paths = [os.fsdecode(b) for b in arrow.column("path_bytes").to_pylist()]
        starts = arrow.column("start").to_pylist() if timed else [None] * len(paths)
        return {p: (int(n), t) for p, n, t in zip(paths, arrow.column("size").to_pylist(), starts, strict=True)}

    @damage_named
    def lookup(self, modality: str, paths: Sequence[str]) -> dict[str, FileRecord]:
        """Bookkeeping of those of `paths` that are present (no vectors read; one record of a file's moments)."""
        track = table_modality(modality)
        return {os.fsdecode(r["path_bytes"]): record_of(r, track) for r in self._rows_of(modality, paths, None)}

    @damage_named
    def file_stats(self, modality: str, paths: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of those of `paths` that are present, as `lookup` finds them, reading those two
        columns only (what a search's hits show: half the CPU of the bookkeeping's columns)."""
        rows = self._rows_of(modality, paths, ["size", "mtime_ns"])
        return {os.fsdecode(r["path_bytes"]): (int(r["size"]), int(r["mtime_ns"])) for r in rows}

    def _rows_of(self, modality: str, paths: Sequence[str], columns: list[str] | None) -> list[dict]:
        """The rows of `paths` (those present; every row of a file's moments) as dicts of path_bytes and
        `columns` (None: the bookkeeping's), in table order per query.

        By key first: the B-tree on `key` answers without a scan. Only the paths not found so (a file
        indexed as moments, or absent) are looked for by `file_key` too, which has no index (a scan: a
        search's lookup of 10 pictures in a 60,000-row table took 5x the CPU when every lookup did)."""
        moments = self.has_moments(modality)
        table = self._reader(modality)
        wanted = self._book(modality) if columns is None else ["path_bytes", *columns]
        rows: list[dict] = []
        for chunk in chunks(list(paths), IN_CHUNK):
            found = table.search().where(keys_in(chunk)).select(wanted).limit(None).to_arrow().to_pylist()
            rows += found
            seen = {os.fsdecode(r["path_bytes"]) for r in found}
            rest = [p for p in chunk if p not in seen] if moments else []
            if rest:
                query = table.search().where(keys_in(rest, moments=True)).select(wanted).limit(None)
                rows += query.to_arrow().to_pylist()
        return rows

    @damage_named
    def fetch(self, modality: str, paths: Sequence[str]) -> tuple[list[FileRecord], dict[str, np.ndarray]]:
        """Rows of `paths` (those present; a path, with every moment of it, or a row key): records and
        column -> (N, width) vectors in the same order."""
        vector_cols = self.vector_columns(modality)
        book = self._book(modality)
        moments = self.has_moments(modality)
        parts = [
            self._reader(modality)
            .search()
            .where(keys_in(chunk, ids=True, moments=moments))
            .select(book + vector_cols)
            .limit(None)
            .to_arrow()
            for chunk in chunks(paths, IN_CHUNK)
        ]
        if not parts:
            return [], {c: np.zeros((0, self.dim(modality, c)), np.float32) for c in vector_cols}
        arrow = pa.concat_tables(parts)
        records = [record_of(r, table_modality(modality)) for r in arrow.select(book).to_pylist()]
        return records, {c: matrix_of(arrow.column(c), self.dim(modality, c)) for c in vector_cols}

    @damage_named
    def take_vectors(self, modality: str, column: str, rows: np.ndarray, version: int) -> np.ndarray:
        """One vector column of the rows at positions `rows` (offsets in scan order, deleted rows not counted)
        of the table as of `version`: (len(rows), dim) float32, those rows read and no others."""
        dataset = self._at(modality, version).to_lance()
        arrow = dataset.take(pa.array(np.asarray(rows, np.int64)), columns=[column])
        return matrix_of(arrow.column(column), self.dim(modality, column))

    @damage_named
    def vectors(self, modality: str, column: str) -> tuple[list[str], np.ndarray, int]:
        """All row names (`row_ref`: paths, and a moment's times) and one vector column: (names, (N, dim)
        float32, table version read)."""
        tbl = self._reader(modality)
        version = int(tbl.version)
        arrow = tbl.search().select([*self._timed(modality, tbl), column]).limit(None).to_arrow()
        return row_names(arrow), matrix_of(arrow.column(column), self.dim(modality, column)), version
