"""Table rows as Arrow, both ways: records and vectors into rows, rows into records, names and matrices."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa

from avsearch.errors import IncompatibleError
from avsearch.media.metadata import FileMeta, MediaInfo
from avsearch.media.walk import printable
from avsearch.store.table_schema import BOOK_COLUMNS, META_FIELDS, FileRecord, is_key, path_key, row_ref

IN_CHUNK = 512  # paths per SQL IN (...) filter
_INFO = ("duration", "sample_rate", "width", "height", "points")


def row_names(arrow: pa.Table | pa.RecordBatch) -> list[str]:
    """The row names (`row_ref`) of rows read with path_bytes (and start/end, where the table has them)."""
    paths = [os.fsdecode(b) for b in arrow.column("path_bytes").to_pylist()]
    if "start" not in arrow.column_names or arrow.column("start").null_count == arrow.num_rows:
        return paths
    starts, ends = arrow.column("start").to_pylist(), arrow.column("end").to_pylist()
    return [row_ref(p, s, e) for p, s, e in zip(paths, starts, ends, strict=True)]


def ref_bytes(arrow: pa.Table) -> pa.Array:
    """The row names of `row_names` as bytes (what filters match against os.fsencode of a name)."""
    column = arrow.column("path_bytes").combine_chunks()
    if "start" not in arrow.column_names or arrow.column("start").null_count == arrow.num_rows:
        return column
    return pa.array([os.fsencode(r) for r in row_names(arrow)], pa.binary())


def keys_in(paths: Sequence[str], ids: bool = False, moments: bool = False) -> str:
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


def record_of(row: dict, track: str) -> FileRecord:
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


def key_prefixes(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The first 64 bits of each row key (32 hex digits, `path_key`) as uint64, vectorised: a membership
    test that can say "maybe held" of a new key (then an upsert decides) but never "new" of a held one."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks() if keys.num_chunks else pa.array([], pa.string())
    fixed = keys.cast(pa.binary(32))  # every key is 32 characters; anything else raises
    raw = np.frombuffer(fixed.buffers()[1], np.uint8, len(fixed) * 32, fixed.offset * 32).reshape(-1, 32)
    digits = raw[:, :16]
    nibbles = (digits & 0x0F) + 9 * (digits >> 6)  # '0'-'9' -> 0-9, 'a'-'f' -> 10-15
    packed = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
    return np.ascontiguousarray(packed).view(">u8").ravel().astype(np.uint64)


def matrix_of(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """A fixed-size-list column -> (N, dim) float32."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(-1, dim), dtype=np.float32)


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
    for name in BOOK_COLUMNS[1:]:
        data[name] = pa.array([getattr(r, name) for r in records], schema.field(name).type)
    if "tags" in schema.names:  # a table made before metadata filters keeps its own layout
        data.update(_meta_arrays(records))
    if "file_key" in schema.names:  # likewise a table made before moments
        data["file_key"] = pa.array([path_key(r.path) for r in records], pa.string())
        data["start"] = pa.array([r.start for r in records], pa.float64())
        data["end"] = pa.array([r.end for r in records], pa.float64())
    for column, matrix in vectors.items():
        data[column] = fixed_column(matrix, schema.field(column).type)
    return pa.table(data, schema=schema)


def fixed_column(matrix: np.ndarray, typ: pa.DataType) -> pa.Array:
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    if m.ndim != 2 or m.shape[1] != typ.list_size:
        raise IncompatibleError(f"vectors of shape {m.shape} do not fit a column of width {typ.list_size}")
    return pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1)), typ.list_size)


def chunks(items: Sequence[str], n: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
