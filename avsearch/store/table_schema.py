"""A table's layout: its columns, a row's bookkeeping record, and row keys and names."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import pyarrow as pa

from avsearch.media.metadata import FileMeta
from avsearch.media.walk import printable
from avsearch.store.manifest import SCHEMA_VERSION

TABLES_DIR = "tables"
LANCE_SUFFIX = ".lance"  # a table is the Lance dataset <TABLES_DIR>/<modality>.lance
NATIVE = "native"  # column of encoder embeddings (the encoder's own space)
SHARED_PREFIX = "proj_"  # columns of bridge-projected embeddings, one per bridge ("proj_<bridge name>")
BOOK_COLUMNS = ("path_bytes", "size", "mtime_ns", "hash", "encoder", "bridge")
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


def is_key(text: str) -> bool:
    """Whether `text` has the form of a row key (32 lowercase hex digits): the id a result carries."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def same_columns(have: pa.Schema, want: pa.Schema) -> bool:
    """Whether two layouts have the same columns (names, types, nullability) in whatever order: columns a
    migration added stand after the vectors (MediaStore.add_missing_columns)."""
    return dict(zip(have.names, have, strict=True)) == dict(zip(want.names, want, strict=True))
