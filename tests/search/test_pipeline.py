"""The ingest pipeline on a few hundred files, with the test-only FAKE encoder (see fake_encoder.py):
incremental updates, renames, copies, deletions, bad files, refusals and the search engine's routes."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from avsearch.errors import IncompatibleError
from avsearch.indexing.pipeline import index_folder
from avsearch.search.engine import SearchEngine, SearchFilters
from avsearch.store.ann_files import ann_name, read_ann_meta
from avsearch.store.config import load_search_config
from avsearch.store.index import Index
from avsearch.store.table_schema import NATIVE
from avsearch.store.tables import MediaStore
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import make_media, write_audio, write_image

SHARED = "proj_audio_visual"


@pytest.fixture()
def big_folder(tmp_path: Path) -> tuple[Path, dict[str, list[Path]]]:
    root = tmp_path / "media"
    return root, make_media(root, images=200, audio=100)


def _paths(store: MediaStore, modality: str) -> set[str]:
    return set(store.bookkeeping(modality))


def test_index_update_and_search_few_hundred_files(big_folder, bridge_file, tmp_path) -> None:
    root, made = big_folder
    index = tmp_path / "index"
    loader = FakeLoader()
    s = index_folder(root, index, bridge_file, encoder_loader=loader, batch_size=64)
    assert s.added == 300 and s.counts == {"image": 200, "audio": 100}
    failed = {Path(p).name for p, _ in s.failed}
    assert {"truncated.png", "garbage.wav", "all_zero.wav", "silent.wav"} <= failed  # silent.wav: 0 bytes
    assert all(reason for _, reason in s.failed)
    assert s.ignored == 1  # notes.txt
    store = MediaStore(index)
    assert _paths(store, "image") == {str(p.absolute()) for p in made["image"]}  # the loop added nothing
    for name in (ann_name("image", NATIVE), ann_name("image", SHARED), ann_name("audio", NATIVE)):
        assert read_ann_meta(index, name)["table_version"] == store.version(name.split(".")[0])

    # Nothing changed: nothing is embedded (corrupt files are retried, and fail again).
    before = loader.files_encoded
    s2 = index_folder(root, index, encoder_loader=loader)
    assert s2.unchanged == 300 and s2.added == 0 and loader.files_encoded == before

    # touch, modify, delete, rename, copy, add.
    img, aud = made["image"], made["audio"]
    os.utime(img[0], ns=(1, 1))  # touched: same content, new mtime
    write_image(img[1], seed=999)  # modified content
    img[2].unlink()  # deleted
    renamed = img[3].with_name("renamed.png")
    img[3].rename(renamed)
    shutil.copy(aud[0], root / "sounds/copy.wav")
    write_audio(root / "sounds/new.wav", seed=5000)
    before = loader.files_encoded
    s3 = index_folder(root, index, encoder_loader=loader)
    assert (s3.touched, s3.renamed, s3.copied, s3.removed, s3.added) == (1, 1, 1, 1, 2)
    assert loader.files_encoded - before == 2  # the modified and the new file only
    assert s3.counts == {"image": 199, "audio": 102}
    imgs = _paths(store, "image")
    assert str(renamed.absolute()) in imgs and str(img[3].absolute()) not in imgs and str(img[2].absolute()) not in imgs
    _, vectors = store.fetch("image", [str(renamed.absolute())])
    assert vectors[NATIVE].shape == (1, 512) and vectors[SHARED].shape == (1, 512)

    # The engine: every route, filters, and self-retrieval in the native space.
    engine = SearchEngine(Index.open(index, encoder_loader=loader))
    res = engine.search_file(img[5], "image", "all", k=3)
    assert [(r.target, r.space) for r in res] == [("image", "clip"), ("audio", "shared:audio_visual")]
    assert res[0].hits[0].path == str(img[5].absolute()) and res[0].hits[0].score == pytest.approx(1.0, abs=1e-4)
    text = engine.search_text("a dog barking", "audio", k=4)
    assert text[0].space == "clap" and len(text[0].hits) == 4
    filt = engine.search_file(aud[4], "audio", "image", k=5, filters=SearchFilters(path_glob="*/set2/*"))
    assert filt[0].hits and all("/set2/" in h.path for h in filt[0].hits)
    scores = [h.score for h in filt[0].hits]
    assert scores == sorted(scores, reverse=True)


def test_other_bridge_is_refused_and_nothing_is_written(bridge_file, other_bridge_file, tmp_path) -> None:
    root = tmp_path / "m"
    write_image(root / "a.png", 1)
    index = tmp_path / "index"
    index_folder(root, index, bridge_file, encoder_loader=FakeLoader())
    version = MediaStore(index).version("image")
    with pytest.raises(IncompatibleError, match="bridge"):
        index_folder(root, index, other_bridge_file, encoder_loader=FakeLoader())
    assert MediaStore(index).version("image") == version


def test_a_faiss_index_behind_its_table_answers_with_the_rows_added_and_without_the_rows_deleted(
    bridge_file, tmp_path, monkeypatch
) -> None:
    """While an index run is under way (or after one was killed before its FAISS refresh), the old FAISS
    index still answers: rows added since are scored exactly beside it, rows deleted since are dropped,
    filters hold on both, and no query reads every vector of the table."""
    root = tmp_path / "m"
    for i in range(12):
        write_image(root / f"{i}.png", i)
    index = tmp_path / "index"
    loader = FakeLoader()
    index_folder(root, index, bridge_file, encoder_loader=loader)
    store = MediaStore(index)
    originals = [str((root / f"{i}.png").absolute()) for i in range(12)]
    # Rows written after the FAISS build: copies of three pictures under new names, and one deleted.
    recs, vectors = store.fetch("image", originals[:3])
    copies = [dataclasses.replace(r, path=f"/elsewhere/copy-{i}.png") for i, r in enumerate(recs)]
    rng = np.random.default_rng(0)  # near copies, not ties: the order of results is then one order
    nudged = {c: v + 0.05 * rng.standard_normal(v.shape).astype(np.float32) for c, v in vectors.items()}
    store.upsert("image", copies, {c: v / np.linalg.norm(v, axis=1, keepdims=True) for c, v in nudged.items()})
    store.delete("image", [originals[5]])
    paths, matrix, _ = store.vectors("image", NATIVE)  # the truth, read before reads are forbidden

    engine = SearchEngine(Index.open(index, encoder_loader=loader))
    monkeypatch.setattr(engine.store, "vectors", lambda *a: pytest.fail("a full scan of the table"))
    for probe in (0, 5, 7):
        q = write_image(tmp_path / f"q{probe}.png", probe)
        res = engine.search_file(q, "image", "image", k=6)[0]
        scores = matrix @ loader("clip-vit-b-32-openai", ("image",)).encode_files("image", [q])[0]
        want = [paths[i] for i in np.argsort(-scores, kind="stable")[:6]]
        assert [h.path for h in res.hits] == want and res.index_kind == "flat+3 new"
        np.testing.assert_allclose([h.score for h in res.hits], np.sort(scores)[::-1][:6], atol=1e-5)
    assert originals[5] not in {h.path for h in engine.search_file(root / "5.png", "image", "image", k=20)[0].hits}
    glob = SearchFilters(path_glob="*[12].png")  # m/1.png, m/2.png, m/11.png and two of the three copies
    hits = engine.search_file(root / "1.png", "image", "image", k=10, filters=glob)[0].hits
    assert [h.path for h in hits][:2] == [originals[1], "/elsewhere/copy-1.png"]
    assert {h.path for h in hits} == {
        *(originals[i] for i in (1, 2, 11)),
        "/elsewhere/copy-1.png",
        "/elsewhere/copy-2.png",
    }


def test_ivf_indexes_are_tuned_on_cross_modal_queries_at_index_time(big_folder, bridge_file, tmp_path) -> None:
    root, made = big_folder
    cfg = load_search_config()
    small = dataclasses.replace(cfg, ann=dataclasses.replace(cfg.ann, exact_max_vectors=50))
    loader = FakeLoader()
    s = index_folder(root, tmp_path / "index", bridge_file, encoder_loader=loader, config=small)
    image_shared = s.indexes[ann_name("image", SHARED)]["params"]
    assert image_shared["kind"] != "flat" and image_shared["nlist"] > 1 and image_shared["nprobe"] >= 1
    # 100 audio vectors are fewer than MIN_REAL_QUERIES: captions through CLAP text are added.
    assert "audio vectors projected" in image_shared["tuning_source"] and "captions" in image_shared["tuning_source"]
    assert "captions through clip text" in s.indexes[ann_name("image", NATIVE)]["params"]["tuning_source"]
    engine = SearchEngine(Index.open(tmp_path / "index", encoder_loader=loader))
    res = engine.search_file(made["audio"][0], "audio", "image", k=5)
    assert res[0].index_kind == image_shared["kind"] and len(res[0].hits) == 5
    # `avsearch info` reports the recall each index measured on held-out cross-modal queries
    from typer.testing import CliRunner

    from avsearch.cli.app import app

    shown = CliRunner().invoke(app, ["info", "--index-dir", str(tmp_path / "index")], env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    held = image_shared["tuning_queries"] - image_shared["tuning_queries"] // 2
    assert f"recall@10 {image_shared['heldout_recall']:.3f} on {held} held-out cross-modal queries" in shown.output


def test_cavmae_ivf_indexes_are_tuned_on_the_other_modality(big_folder, bridge_file, tmp_path) -> None:
    """CAV-MAE has no text tower: its picture index is tuned on its sound vectors and the reverse (real
    cross-modal queries), not on stand-ins (test-only fake encoders)."""
    root, _ = big_folder
    cfg = load_search_config()
    small = dataclasses.replace(cfg, ann=dataclasses.replace(cfg.ann, exact_max_vectors=50))
    s = index_folder(root, tmp_path / "index", bridge_file, encoder_loader=FakeLoader(), config=small, backend="both")
    for table, other in (("cavmae_image", "cavmae_audio"), ("cavmae_audio", "cavmae_image")):
        params = s.indexes[ann_name(table, NATIVE)]["params"]
        assert params["kind"] != "flat" and params["tuning_source"] == f"{other} vectors in cavmae", params
        assert params["tuning_queries"] > 0
