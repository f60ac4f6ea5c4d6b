"""MediaStore.add_missing_columns, the store's migration for new nullable columns: one commit, nothing
else rewritten, values from a fill or nulls, and a run stopped before the commit changes nothing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import avsearch.store.tables as tables
from avsearch.store.table_schema import META_FIELDS, NATIVE, FileRecord
from avsearch.store.tables import MediaStore

SHARED = "proj_av"
# ext as in META_FIELDS, and two columns no layout has (a later feature's)
NEW = (pa.field("ext", pa.string()), pa.field("bpm", pa.float64()), pa.field("caption", pa.string()))


class Stopped(Exception):
    """The run stopped while the new columns were being computed (a kill, a bug in a fill)."""


def _old_store(tmp_path, monkeypatch: pytest.MonkeyPatch) -> MediaStore:
    """Tables of the layout before metadata columns: audio's 5 rows in two fragments, the first two in
    the key index; image empty."""
    legacy = tables.table_schema
    monkeypatch.setattr(tables, "table_schema", lambda dim, shared, metadata=True: legacy(dim, shared, False))
    store = MediaStore(tmp_path)
    store.ensure_table("audio", 4, {SHARED: 3})
    store.ensure_table("image", 4, {SHARED: 3})
    rng = np.random.default_rng(0)
    for part in (["/m/a.wav", "/m/b.flac"], ["/m/c.wav", "/m/d.wav", "/m/it's.wav"]):
        recs = [FileRecord(p, 1, 2, "h", "enc", "br") for p in part]
        vectors = {NATIVE: rng.standard_normal((len(part), 4)), SHARED: rng.standard_normal((len(part), 3))}
        store.upsert("audio", recs, vectors)
        if len(part) == 2:
            store.compact("audio")  # the key index over the first two rows; the next three a fragment apart
    monkeypatch.undo()
    return store


def _stored(store: MediaStore) -> pa.Table:
    """Every existing column of the audio table with its Lance row ids, as stored."""
    dataset = store._table("audio").to_lance()
    return dataset.to_table(
        columns=[c for c in dataset.schema.names if c not in {f.name for f in NEW}], with_row_id=True
    )


def test_columns_added_in_one_commit_filled_or_null_and_nothing_else_rewritten(tmp_path, monkeypatch) -> None:
    store = _old_store(tmp_path, monkeypatch)
    before, version = _stored(store), store.version("audio")
    calls: list[list[str]] = []

    def fill(paths: list[str]) -> dict[str, pa.Array]:  # ext only: bpm and caption stay null
        calls.append(paths)
        return {"ext": pa.array([p.rsplit(".", 1)[1] for p in paths], pa.string())}

    assert store.add_missing_columns("audio", [*NEW, pa.field("key", pa.string())], fill) == ["ext", "bpm", "caption"]
    assert store.version("audio") == version + 1 and len(calls) == 2  # one commit, a batch per fragment
    assert sorted(p for c in calls for p in c) == sorted(before["path"].to_pylist())
    assert _stored(store).equals(before)  # keys, paths, bookkeeping, vectors, row ids
    rows = store._table("audio").to_lance().to_table(columns=["path", "ext", "bpm", "caption"]).to_pylist()
    assert {r["path"]: (r["ext"], r["bpm"], r["caption"]) for r in rows} == {
        p: (p.rsplit(".", 1)[1], None, None) for p in before["path"].to_pylist()
    }
    assert all(store._table("audio").schema.field(f.name).nullable for f in NEW)
    assert set(store.lookup("audio", ["/m/it's.wav", "/m/b.flac"])) == {"/m/it's.wav", "/m/b.flac"}  # by key
    assert store.key_index_rows("audio") == (2, 3)  # the key index as it was

    assert store.add_missing_columns("audio", NEW, fill) == [] and store.version("audio") == version + 1
    # an empty table, no fill: nulls (for the next rows' writers to set)
    assert store.add_missing_columns("image", META_FIELDS) == [f.name for f in META_FIELDS]
    assert store.columns("image")[-len(META_FIELDS) :] == [f.name for f in META_FIELDS] and store.count("image") == 0
    store.ensure_table("image", 4, {SHARED: 3})  # metadata columns after the vectors: still a layout of ours


def test_a_run_stopped_before_the_commit_leaves_the_table_as_it_was(tmp_path, monkeypatch) -> None:
    store = _old_store(tmp_path, monkeypatch)
    before, version = _stored(store), store.version("audio")
    batches = []

    def stopping(paths: list[str]) -> dict[str, pa.Array]:
        batches.append(paths)
        if len(batches) == 2:  # the second fragment
            raise Stopped("stopped half-way")
        return {"ext": pa.array(["x"] * len(paths), pa.string())}

    with pytest.raises(Exception, match="stopped half-way"):
        store.add_missing_columns("audio", NEW, stopping)
    assert store.version("audio") == version and "ext" not in store.columns("audio")
    assert _stored(store).equals(before)
    assert store.add_missing_columns("audio", NEW) == ["ext", "bpm", "caption"]  # the next run does it
