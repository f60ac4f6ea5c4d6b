"""MediaStore.lookup goes through the B-tree on `key`: a whole file is found by its key alone, and only
the paths that are not (a file indexed as moments, or none at all) are looked for by `file_key`, a column
without an index, which Lance answers by scanning the table (about 5x the CPU of a search's key lookup on
a 60,000-row table: benchmarks/serve.py)."""

from __future__ import annotations

import numpy as np
import pytest

from avsearch.store.lance_read import Scan
from avsearch.store.table_schema import NATIVE, FileRecord, path_key
from avsearch.store.tables import MediaStore


def test_whole_files_by_key_alone_moments_by_file(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = MediaStore(tmp_path)
    store.ensure_table("image", 4, {})  # with the moment columns, as every table made now
    whole = [FileRecord(f"/m/p{i}.png", 10 + i, 1000 + i, f"h{i}", "enc", "") for i in range(3)]
    frames = [FileRecord("/m/v.mp4", 99, 5, "hv", "enc", "", start=s, end=s + 1, track="image") for s in (0.0, 2.0)]
    store.upsert("image", whole + frames, {NATIVE: np.zeros((5, 4), np.float32)})
    filters: list[str] = []
    where = Scan.where
    monkeypatch.setattr(Scan, "where", lambda scan, predicate: where(scan, filters.append(predicate) or predicate))

    got = store.lookup("image", ["/m/p0.png", "/m/p2.png"])
    assert {p: (r.size, r.mtime_ns) for p, r in got.items()} == {"/m/p0.png": (10, 1000), "/m/p2.png": (12, 1002)}
    assert filters and not [f for f in filters if "file_key" in f]  # no scan: every path had its key

    filters.clear()
    got = store.lookup("image", ["/m/p1.png", "/m/v.mp4", "/m/gone.png"])
    assert {p: (r.size, r.hash) for p, r in got.items()} == {"/m/p1.png": (11, "h1"), "/m/v.mp4": (99, "hv")}
    assert "file_key" in filters[-1] and path_key("/m/p1.png") not in filters[-1]  # the rest only, scanned


def test_file_stats_are_the_lookups_size_and_mtime(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a search's hits show, read from two columns (plus the path) instead of the bookkeeping's."""
    store = MediaStore(tmp_path)
    store.ensure_table("image", 4, {})
    whole = [FileRecord(f"/m/p{i}.png", 10 + i, 1000 + i, f"h{i}", "enc", "") for i in range(3)]
    frames = [FileRecord("/m/v.mp4", 99, 5, "hv", "enc", "", start=s, end=s + 1, track="image") for s in (0.0, 2.0)]
    store.upsert("image", whole + frames, {NATIVE: np.zeros((5, 4), np.float32)})
    paths = ["/m/p2.png", "/m/v.mp4", "/m/gone.png", "/m/p0.png"]
    selected: list[list[str]] = []
    select = Scan.select
    monkeypatch.setattr(Scan, "select", lambda scan, columns: select(scan, selected.append(columns) or columns))
    stats = store.file_stats("image", paths)
    assert stats == {"/m/p2.png": (12, 1002), "/m/v.mp4": (99, 5), "/m/p0.png": (10, 1000)}
    assert {tuple(c) for c in selected} == {("path_bytes", "size", "mtime_ns")}
    assert stats == {p: (r.size, r.mtime_ns) for p, r in store.lookup("image", paths).items()}
