"""refresh.tuning_queries: the other modality's vectors it tunes an index on are a bounded random sample of
that table's rows, read row by row, never its whole vector column (issue 26: a 10M-row column is 20 GB)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from avsearch.indexing.refresh import guided_queries, tuning_queries
from avsearch.store.config import AnnConfig
from avsearch.store.lance_read import import_lance
from avsearch.store.manifest import BridgeRef, Manifest, ModalityEntry
from avsearch.store.table_schema import NATIVE, FileRecord
from avsearch.store.tables import MediaStore

SHARED = "proj_av"
ROWS, CAP = 300, 40  # a table larger than the cap


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> MediaStore:
    """audio (ROWS rows in two commits, a few deleted) and image tables; row i's projected vector is
    (i, -i, 1): each vector names its row."""
    store = MediaStore(tmp_path_factory.mktemp("tuning"))
    for modality in ("audio", "image"):
        store.ensure_table(modality, 2, {SHARED: 3})
    for part in (range(0, 200), range(200, ROWS)):
        i = np.array(part, dtype=np.float32)
        recs = [FileRecord(f"/m/{n}.wav", 1, 1, "h", "enc", "br") for n in part]
        store.upsert("audio", recs, {NATIVE: np.zeros((len(i), 2)), SHARED: np.stack([i, -i, np.ones_like(i)], 1)})
    store.delete("audio", [f"/m/{n}.wav" for n in range(0, ROWS, 50)])  # offsets no longer row numbers
    return store


def _models() -> SimpleNamespace:
    """What tuning_queries reads of Models here: the manifest (no text towers: no captions are encoded)."""
    bridge = BridgeRef("av", "fp", "/b.pt", ["clap", "clip"], 3)
    entries = {"audio": ModalityEntry("clap-x", "clap", 2), "image": ModalityEntry("clip-x", "clip", 2)}
    return SimpleNamespace(manifest=Manifest(bridges={"av": bridge}, modalities=entries))


@pytest.fixture
def no_full_column(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fails any read of a whole table (MediaStore.vectors, a Lance scan); returns the row counts taken."""
    lance = import_lance()
    taken: list[int] = []
    take = lance.LanceDataset.take

    def counted(self, indices, columns=None):  # noqa: ANN001, ANN202
        taken.append(len(indices))
        return take(self, indices, columns=columns)

    def refused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the whole column was read")

    monkeypatch.setattr(lance.LanceDataset, "take", counted)
    monkeypatch.setattr(lance.LanceDataset, "to_table", refused)
    monkeypatch.setattr(lance.LanceDataset, "to_batches", refused)
    monkeypatch.setattr(MediaStore, "vectors", refused)
    return taken


def test_tuning_queries_are_a_bounded_sample_of_the_other_table_read_by_row(
    store: MediaStore, no_full_column: list[int]
) -> None:
    cfg = AnnConfig(max_tuning_queries=CAP, tuning_captions=())
    queries, source = tuning_queries(store, _models(), cfg, "image", SHARED)
    assert queries.shape == (CAP, 3) and queries.dtype == np.float32
    assert source == "audio vectors projected by av"
    assert sum(no_full_column) == CAP  # the sampled rows and no others
    rows = queries[:, 0].astype(int)
    kept = set(range(ROWS)) - set(range(0, ROWS, 50))
    assert set(rows) <= kept and len(set(rows)) == CAP  # rows of the table as it is now, each once
    np.testing.assert_array_equal(queries, np.stack([rows, -rows, np.ones(CAP)], 1))  # whole rows, not mixed
    again, _ = tuning_queries(store, _models(), cfg, "image", SHARED)
    np.testing.assert_array_equal(again, queries)  # the same seed, the same sample
    other, _ = tuning_queries(store, _models(), cfg, "image", SHARED, seed=1)
    assert set(other[:, 0].astype(int)) != set(rows)
    assert rows.min() < 100 and rows.max() >= 200  # drawn from the whole table, both commits


def test_a_table_under_the_cap_is_taken_whole(store: MediaStore, no_full_column: list[int]) -> None:
    cfg = AnnConfig(max_tuning_queries=10 * ROWS, tuning_captions=())
    queries, _ = tuning_queries(store, _models(), cfg, "image", SHARED)
    assert sorted(queries[:, 0].astype(int)) == sorted(set(range(ROWS)) - set(range(0, ROWS, 50)))


def test_guiding_rows_are_other_rows_of_the_same_draw(store: MediaStore, no_full_column: list[int]) -> None:
    """The sample that guides a build's spills (ann_spill) comes from the same table, read by row, and shares
    no row with the tuning queries (whose held-out half would otherwise overstate the recall)."""
    cfg = AnnConfig(max_tuning_queries=CAP, tuning_captions=())
    queries, source, guide = guided_queries(store, _models(), cfg, "image", SHARED, 100)
    assert source == "audio vectors projected by av" and queries.shape == (CAP, 3) and guide.shape == (100, 3)
    assert sum(no_full_column) == CAP + 100  # one read of the drawn rows, no column
    tuning, guiding = set(queries[:, 0].astype(int)), set(guide[:, 0].astype(int))
    assert len(guiding) == 100 and not tuning & guiding
    assert guiding <= set(range(ROWS)) - set(range(0, ROWS, 50))
    np.testing.assert_array_equal(guide, np.stack([guide[:, 0], -guide[:, 0], np.ones(100)], 1))
    # the guide takes what the tuning queries leave: all of the rest of a small table
    _, _, rest = guided_queries(store, _models(), cfg, "image", SHARED, 10 * ROWS)
    assert len(rest) == ROWS - len(range(0, ROWS, 50)) - CAP
    assert guided_queries(store, _models(), cfg, "image", SHARED, 0)[2] is None


def test_captions_whose_weights_are_missing_are_left_out(store: MediaStore, caplog: pytest.LogCaptureFixture) -> None:
    """An index of vectors made elsewhere (`avsearch index --embeddings`) may have no model weights here: its
    tuning captions are then left out with a warning, and the index is tuned on what else it has."""
    from avsearch.errors import WeightsMissingError

    def no_weights(encoder: str, captions: list[str]) -> np.ndarray:
        raise WeightsMissingError(f"model weights of {encoder} not found")

    models = _models()
    for entry in models.manifest.modalities.values():
        entry.text = True  # both spaces have a text tower whose weights are missing
    models.encode_captions = no_weights
    cfg = AnnConfig(max_tuning_queries=CAP, tuning_captions=("a dog barking",))
    with caplog.at_level("WARNING"):
        queries, source, _ = guided_queries(store, models, cfg, "image", SHARED, 0)
        native = guided_queries(store, models, cfg, "image", NATIVE, 0)
    assert queries.shape == (CAP, 3) and source == "audio vectors projected by av"  # no captions among them
    assert native == (None, "", None)  # nothing else to tune the native column on: the build draws its own
    assert "tuning captions not encoded (model weights of clip-x not found)" in caplog.text
