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
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa

from avsearch.errors import DamagedIndexError, IncompatibleError, InputError, StorageError
from avsearch.media.metadata import FileMeta, MediaInfo
from avsearch.media.walk import printable
from avsearch.store.lance_read import TableReader, open_dataset
from avsearch.store.location import Location
from avsearch.store.locks import WriterLock
from avsearch.store.manifest import SCHEMA_VERSION, table_modality

if TYPE_CHECKING:
    import lancedb

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
# MediaStore.add_missing_columns: the paths of a batch of rows -> new column name -> one value per path
ColumnFill = Callable[[list[str]], dict[str, pa.Array]]

TABLES_DIR = "tables"
_LANCE = ".lance"  # a table is the Lance dataset <TABLES_DIR>/<modality>.lance
NATIVE = "native"  # column of encoder embeddings (the encoder's own space)
SHARED_PREFIX = "proj_"  # columns of bridge-projected embeddings, one per bridge ("proj_<bridge name>")
_BOOK = ("path_bytes", "size", "mtime_ns", "hash", "encoder", "bridge")
_IN_CHUNK = 512  # paths per SQL IN (...) filter
# how object_store (under Lance) words a store it cannot reach or that refuses the credentials
_UNREACHABLE = (
    "Generic S3 error",
    "Generic GCS error",
    "Generic MicrosoftAzure error",
    "Generic { store: ",
    "Error performing",
    "error sending",
)
# Metadata columns (all nullable), in table order; absent from tables made before metadata filters.
META_FIELDS = (
    pa.field("folder", pa.string()),
    pa.field("ext", pa.string()),
    pa.field("tags", pa.list_(pa.string())),
    pa.field("duration", pa.float64()),
    pa.field("sample_rate", pa.int32()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("points", pa.int64()),
)
META_COLUMNS = tuple(f.name for f in META_FIELDS)
# Moment columns (all nullable; null for a plain file's one row), absent from tables made before moments.
MOMENT_FIELDS = (
    pa.field("file_key", pa.string()),
    pa.field("start", pa.float64()),
    pa.field("end", pa.float64()),
)
_REF = "\x00"  # joins a path and a moment's times in a row name (a path never holds NUL)
_INFO = ("duration", "sample_rate", "width", "height", "points")


@dataclass(frozen=True)
class FileRecord:
    """Bookkeeping for one indexed file (no vectors)."""

    path: str  # absolute path as walked (symlinked files keep their link path)
    size: int
    mtime_ns: int
    hash: str  # blake2b of the content: finds renames and touched-but-unchanged files
    encoder: str  # encoder fingerprint the vectors came from
    bridge: str  # bridge fingerprint of the projected vector ("" when not projected)
    meta: FileMeta | None = None  # filterable metadata; None when read from a table without its columns
    start: float | None = None  # a moment's time range in seconds (None: the whole file)
    end: float | None = None
    # a moment's file modality ("image": a video frame, "audio": a sound segment), part of its key: a video's
    # frame and its sound segment may start at the same second and must not share an id
    track: str | None = None

    @property
    def key(self) -> str:
        """The row's key: the path's for a plain file, the moment's otherwise."""
        if self.start is None:
            return path_key(self.path)
        if self.track is None:
            raise ValueError(f"{printable(self.path)}: a moment's record needs its track (image or audio)")
        return moment_key(self.path, self.start, self.track)


def table_schema(native_dim: int, shared: dict[str, int], metadata: bool = True, moments: bool = True) -> pa.Schema:
    """Bookkeeping columns, the metadata columns (not with `metadata=False`: the layout of tables made
    before them), the moment columns (not with `moments=False`, likewise), the native vector column and
    one projected column per bridge (name -> width)."""
    fields = [
        pa.field("key", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("path_bytes", pa.binary(), nullable=False),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("hash", pa.string()),
        pa.field("encoder", pa.string()),
        pa.field("bridge", pa.string()),
        *(META_FIELDS if metadata else ()),
        *(MOMENT_FIELDS if moments else ()),
        pa.field(NATIVE, pa.list_(pa.float32(), native_dim)),
    ]
    fields += [pa.field(column, pa.list_(pa.float32(), dim)) for column, dim in sorted(shared.items())]
    return pa.schema(fields, metadata={"avsearch_schema_version": str(SCHEMA_VERSION)})


def path_key(path: str) -> str:
    """The row key of a path: hex digest of its bytes (os.fsencode round-trips any file name)."""
    return hashlib.blake2b(os.fsencode(path), digest_size=16).hexdigest()


def moment_key(path: str, start: float, track: str) -> str:
    """The row key of a moment of `path` starting at `start` seconds in `track` (the file modality of its
    rows: "image" for a video's frames, "audio" for sound segments): as path_key, over path, track and time."""
    data = os.fsencode(path) + b"\x00" + track.encode() + b"\x00" + repr(float(start)).encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def row_ref(path: str, start: float | None, end: float | None) -> str:
    """One name per row for searches: the path of a plain file's row; path, NUL, 'start,end' of a moment's."""
    return path if start is None else f"{path}{_REF}{float(start)!r},{float(end)!r}"


def split_ref(ref: str) -> tuple[str, float | None, float | None]:
    """(path, start, end) of a row name made by `row_ref`."""
    path, sep, times = ref.partition(_REF)
    if not sep:
        return ref, None, None
    start, end = times.split(",")
    return path, float(start), float(end)


def row_names(arrow: pa.Table | pa.RecordBatch) -> list[str]:
    """The row names (`row_ref`) of rows read with path_bytes (and start/end, where the table has them)."""
    paths = [os.fsdecode(b) for b in arrow.column("path_bytes").to_pylist()]
    if "start" not in arrow.column_names or arrow.column("start").null_count == arrow.num_rows:
        return paths
    starts, ends = arrow.column("start").to_pylist(), arrow.column("end").to_pylist()
    return [row_ref(p, s, e) for p, s, e in zip(paths, starts, ends, strict=True)]


def _ref_bytes(arrow: pa.Table) -> pa.Array:
    """The row names of `row_names` as bytes (what filters match against os.fsencode of a name)."""
    column = arrow.column("path_bytes").combine_chunks()
    if "start" not in arrow.column_names or arrow.column("start").null_count == arrow.num_rows:
        return column
    return pa.array([os.fsencode(r) for r in row_names(arrow)], pa.binary())


def is_key(text: str) -> bool:
    """Whether `text` has the form of a row key (32 lowercase hex digits): the id a result carries."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def _keys_in(paths: Sequence[str], ids: bool = False, moments: bool = False) -> str:
    """A SQL predicate selecting `paths` by key: only hex digits inside the quotes, so nothing to inject.
    With `ids`, a text in the form of a key also selects the row with that key (an item named by its id; an
    item whose own name looks like a key still matches by its name). With `moments` (a table with the
    moment columns), a path also selects its moments' rows (by file_key)."""
    keys = [path_key(p) for p in paths] + [p for p in paths if ids and is_key(p)]
    listed = ", ".join(map(repr, keys))
    if not moments:
        return f"key IN ({listed})"
    files = ", ".join(repr(path_key(p)) for p in paths)
    return f"(key IN ({listed}) OR file_key IN ({files}))"


def _record(row: dict, track: str) -> FileRecord:
    """A row's bookkeeping; `track`: the file modality of its table (a moment's key is made with it)."""
    meta = None
    if "tags" in row:
        info = MediaInfo(**{name: row.get(name) for name in _INFO})
        meta = FileMeta(row.get("folder"), row.get("ext"), tuple(row["tags"] or ()), info)
    return FileRecord(
        os.fsdecode(row["path_bytes"]),
        int(row["size"]),
        int(row["mtime_ns"]),
        row["hash"],
        row["encoder"],
        row["bridge"] or "",
        meta,
        row.get("start"),
        row.get("end"),
        track if row.get("start") is not None else None,
    )


def _meta_arrays(records: Sequence[FileRecord]) -> dict[str, pa.Array]:
    """The metadata columns of `records` (nulls where a record has no metadata, tags [] then)."""
    return meta_columns([r.meta for r in records])


def meta_columns(metas: Sequence[FileMeta | None]) -> dict[str, pa.Array]:
    """Metadata as the META_FIELDS columns, one row each (nulls for None, tags [] then)."""
    metas = [m or FileMeta() for m in metas]
    data = {
        "folder": pa.array([m.folder for m in metas], pa.string()),
        "ext": pa.array([m.ext for m in metas], pa.string()),
        "tags": pa.array([list(m.tags) for m in metas], pa.list_(pa.string())),
    }
    for f in META_FIELDS[3:]:
        data[f.name] = pa.array([getattr(m.info, f.name) for m in metas], f.type)
    return data


def _matrix(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """A fixed-size-list column -> (N, dim) float32."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(-1, dim), dtype=np.float32)


_FILTER_REFUSED = "Error resolving filter expression"


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


def _unreachable(exc: BaseException) -> bool:
    """Whether a Lance error says an object store did not answer or refused us (not damage)."""
    return any(m in str(exc) for m in _UNREACHABLE)


def _unreadable(what: str, exc: BaseException) -> StorageError:
    """A store that does not answer: nothing damaged, nothing to rebuild, try again later (503)."""
    detail = str(exc).splitlines()[0][:160]
    return StorageError(
        f"{what} cannot be read from the store ({detail}); check the endpoint, the credentials and the network"
    )


def _damage_named(method: F) -> F:
    """Lance reports missing or corrupt table files as RuntimeError("lance error: ..."): a damaged index,
    named with its way out, not a traceback. Other errors are ours and surface."""

    @functools.wraps(method)
    def wrapper(self: MediaStore, modality: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, modality, *args, **kwargs)
        except (RuntimeError, OSError, ValueError) as exc:
            detail = str(exc).splitlines()[0][:200]
            if _FILTER_REFUSED in str(exc):
                # a literal LanceDB cannot convert to its column's type: the filter's fault, not the table's
                # (search/filters refuses such literals first; "rebuild the index" would be wrong advice)
                raise InputError(f"filter on table {modality!r} cannot be evaluated ({detail})") from exc
            if "lance" not in str(exc).lower() and "not found" not in str(exc).lower():
                raise
            if isinstance(self.index_dir, str) and _unreachable(exc):
                raise _unreadable(f"{self.index_dir}: table {modality!r}", exc) from exc
            raise DamagedIndexError(
                f"{self.index_dir}: table {modality!r} is damaged ({detail}); "
                "`avsearch index FOLDER --rebuild` re-embeds the index from its media"
            ) from exc

    return wrapper  # type: ignore[return-value]


class MediaStore:
    """The tables of one index folder. Create with the dims once; reopen without them."""

    def __init__(self, index_dir: str | Path | Location) -> None:
        self.location = location = Location.of(index_dir)
        self.index_dir: Path | str = location.local_path or location.uri  # for messages
        self._connection: lancedb.DBConnection | None = None  # LanceDB, for writes: connected on the first
        self._tables: dict[str, lancedb.table.Table] = {}
        self.lock: WriterLock | None = None  # a writer's lock, checked before every commit (store/locks.py)
        # Reads go through Lance datasets (store/lance_read.py), each pinned to a version: the newest,
        # checked on every read (another process, an index run, may have committed), or a FAISS index's.
        self._readers: dict[str, TableReader] = {}
        self._pinned: dict[tuple[str, int], TableReader] = {}  # (modality, version) -> table
        self._read_lock = threading.Lock()
        if not location.is_local:
            self._db  # noqa: B018  (an object store that does not answer fails here, in one line)

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
                if self.location.is_local or not _unreachable(exc):
                    raise
                raise _unreadable(f"{self.location}: the tables", exc) from exc
        return self._connection

    def modalities(self) -> list[str]:
        folder = self.location.local_path
        if folder is None:  # an object store: LanceDB's listing (it knows its stores' quirks)
            return sorted(self._db.list_tables(limit=1000).tables)
        # a local folder: the tables are its <name>.lance folders, as LanceDB lists them
        tables = folder / TABLES_DIR
        found = tables.iterdir() if tables.is_dir() else ()
        return sorted(p.name[: -len(_LANCE)] for p in found if p.name.endswith(_LANCE) and p.is_dir())

    def _reader(self, modality: str) -> TableReader:
        """The table as of its newest commit, for reading."""
        with self._read_lock:
            reader = self._readers.get(modality)
        if reader is None:
            uri = self.location.join(TABLES_DIR, f"{modality}{_LANCE}")
            reader = TableReader(open_dataset(uri, storage_options=self.location.lance_options()))
        else:
            reader = reader.latest()
        with self._read_lock:
            self._readers[modality] = reader
        return reader

    def _check_lock(self) -> None:
        if self.lock is not None:
            self.lock.check()

    def ensure_table(self, modality: str, native_dim: int, shared: dict[str, int]) -> None:
        """Create the modality's table if missing; refuse one whose vector widths differ."""
        self._check_lock()
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
            if not any(_same_columns(have, want) for want in layouts):
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

    def _table(self, modality: str) -> lancedb.table.Table:
        if modality not in self._tables:
            self._tables[modality] = self._db.open_table(modality)
        return self._tables[modality]

    @_damage_named
    def vector_columns(self, modality: str) -> list[str]:
        """NATIVE first, then the projected columns."""
        names = self._reader(modality).schema.names
        return [NATIVE] + [n for n in names if n.startswith(SHARED_PREFIX)]

    def dim(self, modality: str, column: str) -> int:
        return self._reader(modality).schema.field(column).type.list_size

    @_damage_named
    def columns(self, modality: str) -> list[str]:
        """The table's column names (an index made before metadata filters lacks META_COLUMNS)."""
        return list(self._reader(modality).schema.names)

    def _book(self, modality: str) -> list[str]:
        """Bookkeeping columns to read: _BOOK plus the metadata and moment columns the table has."""
        names = set(self._reader(modality).schema.names)
        moments = [f.name for f in MOMENT_FIELDS if f.name in names]
        return list(_BOOK) + [c for c in META_COLUMNS if c in names] + moments

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

    @_damage_named
    def row_ids(self, modality: str, version: int) -> tuple[np.ndarray, pa.Array]:
        """Every row's Lance row id (uint64) and path bytes, at `version`, in scan order."""
        table = self._at(modality, version)
        arrow = table.search().select(self._timed(modality, table)).with_row_id(True).limit(None).to_arrow()
        return arrow.column("_rowid").to_numpy(), _ref_bytes(arrow)

    @_damage_named
    def filter_rows(self, modality: str, predicate: str, version: int) -> np.ndarray:
        """Lance row ids (uint64) of the rows passing a compiled filter predicate, at `version`."""
        query = self._at(modality, version).search().where(predicate).select(["size"]).with_row_id(True)
        return query.limit(None).to_arrow().column("_rowid").to_numpy()

    @_damage_named
    def filtered_vectors(
        self, modality: str, column: str, predicate: str, version: int
    ) -> tuple[list[str], np.ndarray]:
        """Row names (`row_ref`) and one vector column of the rows passing a compiled filter predicate, at
        `version`."""
        table = self._at(modality, version)
        query = table.search().where(predicate).select([*self._timed(modality, table), column])
        arrow = query.limit(None).to_arrow()
        return row_names(arrow), _matrix(arrow.column(column), self.dim(modality, column))

    @_damage_named
    def vectors_at(self, modality: str, column: str, version: int) -> tuple[list[str], np.ndarray]:
        """Every row's name (`row_ref`) and one vector column as of `version`: what a flat FAISS build of
        that version holds (store/exact.py searches them without FAISS)."""
        table = self._at(modality, version)
        arrow = table.search().select([*self._timed(modality, table), column]).limit(None).to_arrow()
        return row_names(arrow), _matrix(arrow.column(column), self.dim(modality, column))

    @_damage_named
    def version(self, modality: str) -> int:
        return int(self._reader(modality).version)

    @_damage_named
    def count(self, modality: str) -> int:
        return int(self._reader(modality).count_rows())

    @_damage_named
    def bookkeeping(self, modality: str) -> dict[str, FileRecord]:
        """Every row's bookkeeping, keyed by path (no vectors read)."""
        arrow = self._reader(modality).search().select(self._book(modality)).limit(None).to_arrow()
        track = table_modality(modality)
        records = (_record(r, track) for r in arrow.to_pylist())
        return {r.path: r for r in records}

    @_damage_named
    def file_rows(self, modality: str) -> dict[str, tuple[int, float | None]]:
        """Each file's size and its row's start (None: a whole-file row), keyed by path, a file's last row
        winning as in `bookkeeping`: three columns read instead of the bookkeeping (`avsearch info`)."""
        reader = self._reader(modality)
        timed = "start" in reader.schema.names
        arrow = reader.search().select(["path_bytes", "size", *(["start"] if timed else [])]).limit(None).to_arrow()
        paths = [os.fsdecode(b) for b in arrow.column("path_bytes").to_pylist()]
        starts = arrow.column("start").to_pylist() if timed else [None] * len(paths)
        return {p: (int(n), t) for p, n, t in zip(paths, arrow.column("size").to_pylist(), starts, strict=True)}

    @_damage_named
    def lookup(self, modality: str, paths: Sequence[str]) -> dict[str, FileRecord]:
        """Bookkeeping of those of `paths` that are present (no vectors read; one record of a file's moments)."""
        out: dict[str, FileRecord] = {}
        moments = self.has_moments(modality)
        for chunk in _chunks(list(paths), _IN_CHUNK):
            where = _keys_in(chunk, moments=moments)
            query = self._reader(modality).search().where(where).select(self._book(modality)).limit(None)
            for r in query.to_arrow().to_pylist():
                record = _record(r, table_modality(modality))
                out[record.path] = record
        return out

    @_damage_named
    def fetch(self, modality: str, paths: Sequence[str]) -> tuple[list[FileRecord], dict[str, np.ndarray]]:
        """Rows of `paths` (those present; a path, with every moment of it, or a row key): records and
        column -> (N, width) vectors in the same order."""
        vector_cols = self.vector_columns(modality)
        book = self._book(modality)
        moments = self.has_moments(modality)
        parts = [
            self._reader(modality)
            .search()
            .where(_keys_in(chunk, ids=True, moments=moments))
            .select(book + vector_cols)
            .limit(None)
            .to_arrow()
            for chunk in _chunks(paths, _IN_CHUNK)
        ]
        if not parts:
            return [], {c: np.zeros((0, self.dim(modality, c)), np.float32) for c in vector_cols}
        arrow = pa.concat_tables(parts)
        records = [_record(r, table_modality(modality)) for r in arrow.select(book).to_pylist()]
        return records, {c: _matrix(arrow.column(c), self.dim(modality, c)) for c in vector_cols}

    @_damage_named
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
            merge = merge.when_not_matched_by_source_delete(_keys_in(sorted({r.path for r in records}), moments=True))
        merge.execute(batch)

    @_damage_named
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

    @_damage_named
    def delete(self, modality: str, paths: Iterable[str]) -> int:
        """Delete rows by path, moments included (one commit per 512 paths); returns how many paths were
        asked for."""
        paths = list(paths)
        moments = self.has_moments(modality)
        for chunk in _chunks(paths, _IN_CHUNK):
            self._check_lock()
            self._table(modality).delete(_keys_in(chunk, moments=moments))
        return len(paths)

    @_damage_named
    def vectors(self, modality: str, column: str) -> tuple[list[str], np.ndarray, int]:
        """All row names (`row_ref`: paths, and a moment's times) and one vector column: (names, (N, dim)
        float32, table version read)."""
        tbl = self._reader(modality)
        version = int(tbl.version)
        arrow = tbl.search().select([*self._timed(modality, tbl), column]).limit(None).to_arrow()
        return row_names(arrow), _matrix(arrow.column(column), self.dim(modality, column)), version

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
        tbl = self._table(modality)
        for i in tbl.list_indices():
            if list(i.columns) == ["key"]:
                stats = tbl.index_stats(i.name)
                return stats.num_indexed_rows, stats.num_unindexed_rows
        return None


def rows_table(schema: pa.Schema, records: Sequence[FileRecord], vectors: dict[str, np.ndarray]) -> pa.Table:
    """Records and their vector columns as Arrow rows of a table with `schema`: what an upsert writes,
    and what a Ray worker writes as a Lance fragment (one layout for both)."""
    if "file_key" not in schema.names and any(r.start is not None for r in records):
        path = next(r.path for r in records if r.start is not None)
        raise IncompatibleError(
            f"{printable(path)}: its moments (a video, or a recording longer than one window) need an index "
            "made for them; this one is older: `avsearch index FOLDER --rebuild` rebuilds it"
        )
    data: dict[str, pa.Array] = {
        "key": pa.array([r.key for r in records], pa.string()),
        "path": pa.array([printable(r.path) for r in records], pa.string()),
        "path_bytes": pa.array([os.fsencode(r.path) for r in records], pa.binary()),
    }
    for name in _BOOK[1:]:
        data[name] = pa.array([getattr(r, name) for r in records], schema.field(name).type)
    if "tags" in schema.names:  # a table made before metadata filters keeps its own layout
        data.update(_meta_arrays(records))
    if "file_key" in schema.names:  # likewise a table made before moments
        data["file_key"] = pa.array([path_key(r.path) for r in records], pa.string())
        data["start"] = pa.array([r.start for r in records], pa.float64())
        data["end"] = pa.array([r.end for r in records], pa.float64())
    for column, matrix in vectors.items():
        data[column] = _fixed(matrix, schema.field(column).type)
    return pa.table(data, schema=schema)


def _same_columns(have: pa.Schema, want: pa.Schema) -> bool:
    """Whether two layouts have the same columns (names, types, nullability) in whatever order: columns a
    migration added stand after the vectors (MediaStore.add_missing_columns)."""
    return dict(zip(have.names, have, strict=True)) == dict(zip(want.names, want, strict=True))


def _fixed(matrix: np.ndarray, typ: pa.DataType) -> pa.Array:
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    if m.ndim != 2 or m.shape[1] != typ.list_size:
        raise IncompatibleError(f"vectors of shape {m.shape} do not fit a column of width {typ.list_size}")
    return pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1)), typ.list_size)


def _chunks(items: Sequence[str], n: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
