"""LanceDB tables, one per modality: per-file bookkeeping plus native and projected vectors.

The tables live under <index>/tables, a local folder or an object-store prefix (store/location.py gives
LanceDB the location's storage options).

Each write (upsert or delete) is one Lance commit, so a run killed at any point leaves every table at
its last committed version; the next run compares bookkeeping with the disk and carries on.

File names are bytes on Linux and need not be UTF-8, so a row keeps its path three ways: `path_bytes`
(the exact bytes, what avsearch reads back), `path` (text for people and SQL-free display: invalid bytes
shown as \\xNN) and `key` (hex digest of the bytes). Rows are matched by `key` only, so no file name
ever reaches a SQL predicate (the predicates hold hex digits and nothing else).

Moments: a video's sampled frames (image tables) and sound segments (audio tables), and the segments of a
long recording, are rows of their own with `start`/`end` in seconds and `file_key` (the path's key); their
`key` is derived from the path and the start (`moment_key`). A plain file keeps one row, its key the
path's, `start`/`end` null. Everything done by path (lookup, fetch, delete) selects `key` or `file_key`, so
a file's moments are found, copied and deleted together. Where a search needs one name per row, a moment
row is named by `row_ref` (the path, a NUL, its times: no path holds a NUL) and `split_ref` reads it back.
Tables made before moments open and search as they are; writing a moment into one raises
IncompatibleError saying `--rebuild`.

Filterable metadata (avsearch.media.metadata.FileMeta) sits in nullable columns: `folder`, `ext`,
`tags` (list<string>: filtered with DataFusion's array_has), `duration`, `sample_rate`, `width`,
`height`, `points`. Tables made before these columns existed open and search as they are (their rows
carry no metadata: FileRecord.meta None); the next `avsearch index FOLDER` adds the columns, filled from
the files' headers without re-embedding (indexing/metadata_pass.py).

`filter_rows` and `filtered_vectors` run a predicate that avsearch.search.filters rendered from a
parsed filter (names and re-quoted literals only), on the table as of a given version.

New nullable columns reach existing tables by one migration, `MediaStore.add_missing_columns(table,
fields, fill)` (on an index: `Index.add_missing_columns`, which also keeps its FAISS builds current): the
columns of `fields` a table lacks are appended in ONE Lance commit that rewrites no existing column (keys,
paths, vectors and Lance row ids unchanged), their values from `fill(paths)` batch by batch, or null. A run
killed before the commit leaves the table as it was, and the next run adds them again. Columns may thus
stand in any order: layouts are compared by column, not by position.

MediaStore is put together from table_reads.py (reads) and table_writes.py (commits); a table's layout, keys
and row names are table_schema.py, rows as Arrow table_rows.py, Lance's errors named table_errors.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

from avsearch.errors import IncompatibleError
from avsearch.store.location import Location
from avsearch.store.table_errors import outages_named
from avsearch.store.table_schema import LANCE_SUFFIX, TABLES_DIR, same_columns, table_schema
from avsearch.store.table_writes import TableWrites


class MediaStore(TableWrites):
    """The tables of one index folder. Create with the dims once; reopen without them."""

    def __init__(self, index_dir: str | Path | Location) -> None:
        self.location = location = Location.of(index_dir)
        self.index_dir: Path | str = location.local_path or location.uri  # for messages
        # what the reads (store/table_reads.py) and the writes (store/table_writes.py) keep
        self._connection = None
        self._tables = {}
        self.lock = None
        self._readers = {}
        self._pinned = {}
        self._read_lock = threading.Lock()
        if not location.is_local:
            self._db  # noqa: B018  (an object store that does not answer fails here, in one line)

    def modalities(self) -> list[str]:
        folder = self.location.local_path
        if folder is None:  # an object store: LanceDB's listing (it knows its stores' quirks)
            with outages_named(f"{self.location}: the tables", remote=True):
                return sorted(self._db.list_tables(limit=1000).tables)
        # a local folder: the tables are its <name>.lance folders, as LanceDB lists them
        tables = folder / TABLES_DIR
        found = tables.iterdir() if tables.is_dir() else ()
        return sorted(p.name[: -len(LANCE_SUFFIX)] for p in found if p.name.endswith(LANCE_SUFFIX) and p.is_dir())

    def ensure_table(self, modality: str, native_dim: int, shared: dict[str, int]) -> None:
        """Create the modality's table if missing; refuse one whose vector widths differ."""
        self._check_lock()
        with outages_named(f"{self.index_dir}: table {modality!r}", not self.location.is_local):
            self._ensure_table(modality, native_dim, shared)

    def _ensure_table(self, modality: str, native_dim: int, shared: dict[str, int]) -> None:
        listed = modality in self.modalities()
        if listed and self._phantom(modality):
            # a dropped table whose empty prefix the store still lists (SeaweedFS keeps empty folders)
            self._tables[modality] = self._db.create_table(
                modality, schema=table_schema(native_dim, shared), mode="overwrite"
            )
            return
        if listed:
            have = self._table(modality).schema.remove_metadata()
            # also the layouts of tables made before the metadata or the moment columns (a run adds them)
            layouts = [
                table_schema(native_dim, shared, metadata=m, moments=t) for m in (True, False) for t in (True, False)
            ]
            if not any(same_columns(have, want) for want in layouts):
                raise IncompatibleError(
                    f"table {modality!r} in {self.index_dir} has columns {have.names} and widths "
                    f"that do not match the encoders/bridge given: build a new index with --index-dir"
                )
            return
        self._tables[modality] = self._db.create_table(modality, schema=table_schema(native_dim, shared))

    def _phantom(self, modality: str) -> bool:
        """Whether a table listed on an object store holds no table at all (no version to open)."""
        if not isinstance(self.index_dir, str):
            return False  # a local folder lists what is there
        try:
            self._table(modality)
        except ValueError as exc:
            if "not found" not in str(exc).lower():
                raise
            return True
        return False
