"""A store's writes: LanceDB commits (create, upsert, delete, new columns), each checked against the writer lock."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from avsearch.errors import IncompatibleError
from avsearch.store.locks import WriterLock
from avsearch.store.table_errors import damage_named, outages_named, unreachable, unreadable
from avsearch.store.table_reads import TableReads
from avsearch.store.table_rows import IN_CHUNK, chunks, keys_in, rows_table
from avsearch.store.table_schema import TABLES_DIR, FileRecord

if TYPE_CHECKING:
    import lancedb

log = logging.getLogger(__name__)
# MediaStore.add_missing_columns: the paths of a batch of rows -> new column name -> one value per path
ColumnFill = Callable[[list[str]], dict[str, pa.Array]]


def import_lancedb() -> Any:
    """The lancedb module (writes only: reads go through store/lance_read.py), imported without its REST
    client's package __init__ (nine API modules, about 60% of `import lancedb`), which local and
    object-store tables never use; that package runs its own __init__ if anything asks it for another
    name (encoders/upstream.py `submodule`)."""
    if "lancedb" not in sys.modules:
        import contextlib

        from avsearch.encoders.upstream import submodule
        from avsearch.store.lance_read import import_lance

        import_lance()  # lancedb imports lance: without pandas where nothing needs it yet
        with contextlib.suppress(ImportError):  # another lancedb that does without it: nothing to skip
            submodule("lance_namespace_urllib3_client", "models")
    import lancedb

    return lancedb


class TableWrites(TableReads):
    """The writing half of MediaStore (store/tables.py), which sets these attributes."""

    _connection: lancedb.DBConnection | None  # LanceDB, for writes: connected on the first
    _tables: dict[str, lancedb.table.Table]
    lock: WriterLock | None  # a writer's lock, checked before every commit (store/locks.py)

    @property
    def _db(self) -> lancedb.DBConnection:
        """The LanceDB connection (writes; listing an object store's tables), made on first use."""
        if self._connection is None:
            lancedb = import_lancedb()
            try:
                # check for newer versions on every read: another process (an index run) may have committed
                self._connection = lancedb.connect(
                    self.location.join(TABLES_DIR),
                    read_consistency_interval=timedelta(0),
                    storage_options=self.location.lance_options() or None,
                )
            except (RuntimeError, OSError, ValueError) as exc:
                if self.location.is_local or not unreachable(exc):
                    raise
                raise unreadable(f"{self.location}: the tables", exc) from exc
        return self._connection

    def _check_lock(self) -> None:
        if self.lock is not None:
            self.lock.check()

    def _table(self, modality: str) -> lancedb.table.Table:
        if modality not in self._tables:
            self._tables[modality] = self._db.open_table(modality)
        return self._tables[modality]

    @damage_named
    def upsert(
        self, modality: str, records: Sequence[FileRecord], vectors: dict[str, np.ndarray], whole: bool = False
    ) -> None:
        """Insert or replace rows by path in ONE commit. vectors: every vector column -> (N, width).

        whole: `records` are ALL the rows of their files, so the same commit deletes those files' other rows
        (left from their earlier content: a changed video's moments past its new end, a long recording's
        segments when it became short, its whole-file row when it became long); a kill leaves either."""
        if not records:
            return
        self._check_lock()
        tbl = self._table(modality)
        for column in self.vector_columns(modality):
            if column not in vectors:
                raise IncompatibleError(f"table {modality!r} needs {column} vectors, none were given")
        batch = rows_table(tbl.schema, records, {c: vectors[c] for c in self.vector_columns(modality)})
        merge = tbl.merge_insert("key").when_matched_update_all().when_not_matched_insert_all()
        if whole and self.has_moments(modality):  # a table made before moments: one row per file, replaced
            merge = merge.when_not_matched_by_source_delete(keys_in(sorted({r.path for r in records}), moments=True))
        merge.execute(batch)

    @damage_named
    def append(self, modality: str, batches: Iterable[tuple[Sequence[FileRecord], dict[str, np.ndarray]]]) -> int:
        """Add rows whose keys the table does not hold, streamed from `batches` ((records, vectors) as for
        `upsert`) in ONE commit; returns the rows written. No key lookup: an upsert joins its rows against
        the whole key column, a cost that grows with the table (1M rows: 0.5 s a 4,096-row upsert, against
        0.1 s appended); the caller checks the keys (`held_keys`). A kill or an error leaves none of them."""
        self._check_lock()
        tbl = self._table(modality)
        columns = self.vector_columns(modality)
        written, failed = [0], []

        def rows() -> Iterator[pa.RecordBatch]:
            try:
                for records, vectors in batches:
                    self._check_lock()  # a writer that lost its lock stops before the commit
                    missing = [c for c in columns if c not in vectors]
                    if missing:
                        raise IncompatibleError(f"table {modality!r} needs {missing[0]} vectors, none were given")
                    written[0] += len(records)
                    yield from rows_table(tbl.schema, records, {c: vectors[c] for c in columns}).to_batches()
            except Exception as exc:  # Lance re-raises it as its own error: keep ours to raise as it was
                failed.append(exc)
                raise

        try:
            tbl.add(pa.RecordBatchReader.from_batches(tbl.schema, rows()))
        except Exception:
            if failed:
                raise failed[0] from None
            raise
        return written[0]

    @damage_named
    def add_missing_columns(
        self, modality: str, fields: Sequence[pa.Field], fill: ColumnFill | None = None
    ) -> list[str]:
        """Append those of `fields` the table lacks, nullable, in ONE Lance commit that rewrites no existing
        column (keys, paths, vectors and row ids stay). fill(paths of a batch of rows) -> {column: values in
        that order}; a column it leaves out, or every column without a fill, is null. Returns the names
        added ([] when the table has them all)."""
        have = set(self.columns(modality))
        new = [f.with_nullable(True) for f in fields if f.name not in have]
        if not new:
            return []
        self._check_lock()
        dataset = self._table(modality).to_lance()
        if fill is None or dataset.count_rows() == 0:
            dataset.add_columns(new)  # all null: Lance writes no data for them
            return [f.name for f in new]
        import lance

        schema = pa.schema(new)

        @lance.batch_udf(output_schema=schema)
        def values(batch: pa.RecordBatch) -> pa.RecordBatch:
            self._check_lock()  # a writer that lost its lock stops before the commit
            paths = [os.fsdecode(b) for b in batch.column("path_bytes").to_pylist()]
            given = fill(paths)
            columns = [given.get(f.name, pa.nulls(len(paths), f.type)) for f in new]
            return pa.RecordBatch.from_arrays(columns, schema=schema)

        dataset.add_columns(values, read_columns=["path_bytes"])
        return [f.name for f in new]

    @damage_named
    def delete(self, modality: str, paths: Iterable[str]) -> int:
        """Delete rows by path, moments included (one commit per 512 paths); returns how many paths were
        asked for."""
        paths = list(paths)
        moments = self.has_moments(modality)
        for chunk in chunks(paths, IN_CHUNK):
            self._check_lock()
            self._table(modality).delete(keys_in(chunk, moments=moments))
        return len(paths)

    def compact(self, modality: str) -> None:
        """Merge the small per-batch fragments, bring the key index up to date and drop old versions
        (after a completed run)."""
        self._check_lock()
        try:
            tbl = self._table(modality)
            # Rows are found by key (hits, items, upserts, deletes): without a B-tree every lookup scans
            # the table (1M rows: 92 ms for 10 keys; 4 ms with it, built in under a second).
            if not any(list(i.columns) == ["key"] for i in tbl.list_indices()):
                from lancedb.index import BTree

                tbl.create_index("key", config=BTree())
            # optimize() also folds rows added since into the index; versions older than a minute go:
            # long enough for a query that is reading right now
            tbl.optimize(cleanup_older_than=timedelta(minutes=1))
        except Exception as exc:  # compaction is an optimisation; a failure must not fail the run
            log.warning("compaction of table %s skipped: %s", modality, exc)

    def key_index_rows(self, modality: str) -> tuple[int, int] | None:
        """(indexed, not yet indexed) rows of the key index, or None when the table has none."""
        with outages_named(f"{self.index_dir}: table {modality!r}", not self.location.is_local):
            tbl = self._table(modality)
            for i in tbl.list_indices():
                if list(i.columns) == ["key"]:
                    stats = tbl.index_stats(i.name)
                    return stats.num_indexed_rows, stats.num_unindexed_rows
        return None
