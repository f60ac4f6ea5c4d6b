"""The row names of a FAISS build, kept as the Arrow array they were read as and decoded on access.

A build's paths file holds one name per FAISS id. As a list of Python strings, 10M names of ~65 bytes take
~1.2 GB (an object each) and twice that while being made; as Arrow binary they take their bytes plus
offsets (~0.7 GB), which keeps a query process at 10M rows under 3 GB (issue 26). A search decodes only the
names of its hits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import overload

import pyarrow as pa

_BATCH = 65_536  # names decoded together when iterating


class PathList(Sequence[str]):
    """A read-only sequence of file names (str, decoded with os.fsdecode) over an Arrow binary array."""

    def __init__(self, names: pa.Array | pa.ChunkedArray) -> None:
        self.names = names.combine_chunks() if isinstance(names, pa.ChunkedArray) else names

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [os.fsdecode(b) for b in self.names[i].to_pylist()]
        n = len(self.names)
        if not -n <= i < n:
            raise IndexError(f"path {i} of {n}")
        return os.fsdecode(self.names[i % n].as_py())

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self.names), _BATCH):
            yield from (os.fsdecode(b) for b in self.names[start : start + _BATCH].to_pylist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PathList):
            return self.names.equals(other.names)
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  (mutable-sequence semantics: not hashable, like a list)
