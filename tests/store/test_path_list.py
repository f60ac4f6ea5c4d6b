"""PathList: a build's row names kept as Arrow binary and decoded on access (issue 26: 10M names as Python
strings took ~1.2 GB of a query process)."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from avsearch.store.path_list import PathList

NAMES = ["a.jpg", "", "b/ü.png", os.fsdecode(b"bad\xff.jpg"), "clip.mp4\x001.5\x002.0"]


def _paths() -> PathList:
    chunks = [pa.array([os.fsencode(p) for p in part], pa.binary()) for part in (NAMES[:2], NAMES[2:])]
    return PathList(pa.chunked_array(chunks))


def test_it_reads_as_the_list_of_names_it_was_written_from() -> None:
    paths = _paths()
    assert len(paths) == len(NAMES) and list(paths) == NAMES and paths == NAMES and paths == _paths()
    assert [paths[i] for i in range(-len(NAMES), len(NAMES))] == NAMES + NAMES
    assert paths[1:4] == NAMES[1:4] and paths.count("") == 1 and paths.index("b/ü.png") == 2
    assert "clip.mp4\x001.5\x002.0" in paths and paths != NAMES[:-1] and paths != NAMES[::-1]
    with pytest.raises(IndexError):
        paths[len(NAMES)]
    with pytest.raises(TypeError):
        hash(paths)
