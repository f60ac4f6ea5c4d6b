"""TableVectors: an index's re-ranking vectors read by row from a Lance table at one version (issue 26)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from avsearch.errors import DamagedIndexError
from avsearch.store.ann_table_vectors import GONE_POSITION, TableVectors, fingerprints
from avsearch.store.lance_read import import_lance

DIM = 8


def _table(folder: Path, n: int) -> tuple[object, np.ndarray]:
    lance = import_lance()
    x = np.random.default_rng(0).standard_normal((n, DIM)).astype(np.float32)
    data = pa.table({"id": np.arange(n), "v": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM)})
    return lance.write_dataset(data, str(folder), max_rows_per_file=40), x  # several data files


def test_take_reads_rows_in_any_order_with_repeats(tmp_path: Path) -> None:
    ds, x = _table(tmp_path / "t.lance", 100)
    tv = TableVectors(lambda: ds, ds.version, "v", DIM, 100)
    ids = np.array([99, 3, 41, 3, 0, 40, 39])
    np.testing.assert_array_equal(tv.take(ids), x[ids])
    assert tv.take(np.zeros(0, np.int64)).shape == (0, DIM)
    with pytest.raises(IndexError):
        tv.take(np.array([100]))


def test_positions_map_ids_to_rows_after_deletions(tmp_path: Path) -> None:
    """After rows are deleted the survivors move up: an id reads the row at its recorded position."""
    ds, x = _table(tmp_path / "t.lance", 100)
    ds.delete("id < 10 OR id = 50")
    moved = import_lance().dataset(str(tmp_path / "t.lance"))
    survivors = np.array([i for i in range(100) if i >= 10 and i != 50])
    positions = np.full(100, GONE_POSITION, np.int64)  # id i (the row's old number) -> its position now
    positions[survivors] = np.arange(len(survivors))
    tv = TableVectors(lambda: moved, moved.version, "v", DIM, 100, positions)
    ids = np.array([99, 51, 49, 10, 51])
    np.testing.assert_array_equal(tv.take(ids), x[ids])
    with pytest.raises(IndexError, match="no row"):
        tv.take(np.array([50]))  # deleted: no position
    # the same positions read against the identity would be the wrong rows (the mapping matters)
    plain = TableVectors(lambda: moved, moved.version, "v", DIM, 89)
    assert not np.isin(plain.take(np.array([10, 49, 51])), x[[10, 49, 51]]).all(axis=1).any()


def test_a_cleaned_up_version_is_a_damaged_index_error(tmp_path: Path) -> None:
    from datetime import timedelta

    ds, x = _table(tmp_path / "t.lance", 100)
    old = import_lance().dataset(str(tmp_path / "t.lance"), version=ds.version)
    tv = TableVectors(lambda: old, old.version, "v", DIM, 100)
    np.testing.assert_array_equal(tv.take(np.array([5])), x[[5]])
    # a compaction rewrites the data files; cleaning up old versions deletes the ones only the old one used
    ds.delete("id = 1")
    import_lance().dataset(str(tmp_path / "t.lance")).optimize.compact_files(materialize_deletions_threshold=0.0)
    import_lance().dataset(str(tmp_path / "t.lance")).cleanup_old_versions(older_than=timedelta(0))
    with pytest.raises(DamagedIndexError, match="no longer readable"):
        tv.take(np.array([5, 70]))


def test_fingerprints_tell_changed_rows_from_unchanged() -> None:
    x = np.random.default_rng(1).standard_normal((500, 512)).astype(np.float32)
    marks = fingerprints(x)
    assert marks.dtype == np.uint64 and len(set(marks.tolist())) == 500
    np.testing.assert_array_equal(fingerprints(x.copy()), marks)
    y = x.copy()
    y[7, 300] = np.nextafter(y[7, 300], np.float32(np.inf))  # one bit of one value
    y[9] = x[10]  # a row swapped for another
    y[11, [0, 1]] = y[11, [1, 0]]  # two values of a row swapped
    changed = np.flatnonzero(fingerprints(y) != marks)
    assert changed.tolist() == [7, 9, 11]


def test_positions_out_of_id_order_come_back_in_id_order(tmp_path: Path) -> None:
    """After updates an id's row need not follow the previous id's (a changed row moves to the end): rows
    are read in position order and returned in the order the ids were asked."""
    ds, x = _table(tmp_path / "t.lance", 100)
    positions = np.random.default_rng(3).permutation(100).astype(np.int64)
    tv = TableVectors(lambda: ds, ds.version, "v", DIM, 100, positions)
    ids = np.array([0, 1, 2, 97, 50, 1])
    np.testing.assert_array_equal(tv.take(ids), x[positions[ids]])
