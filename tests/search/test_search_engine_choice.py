"""Which engine answers a search, and the GPU path's fallback: results say "faiss-cpu", "faiss-gpu" or
"numpy" (a flat build no GPU takes: store/exact.py); --device cpu keeps FAISS off the GPU; a GPU index
that fails falls back to the CPU with one warning and the same answer. Each test sets the GPUs FAISS and
torch see (none, and no NVIDIA driver, unless it says otherwise), so the tests hold on a machine with a
GPU as on one without; the GPU index is a test-only stand-in that fails, or that answers through the CPU
index while reporting itself as a GPU copy."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from avsearch.indexing.pipeline import index_folder
from avsearch.search.engine import SearchEngine
from avsearch.store import ann as ann_module
from avsearch.store.index import Index
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_audio, write_image


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """FAISS and torch see no GPU, whatever this machine has (a test that wants one says so)."""
    monkeypatch.setattr("avsearch.store.torch_search.nvidia_driver", lambda: False)
    monkeypatch.setattr("avsearch.store.ann.gpu_count", lambda: 0)
    monkeypatch.setattr("avsearch.store.ann_files.torch_gpu", lambda: None)
    monkeypatch.setattr("avsearch.store.torch_search.torch_gpu", lambda: None)


def _with_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine has an NVIDIA driver: FAISS and torch are asked about GPUs (the test sets their answers)."""
    monkeypatch.setattr("avsearch.store.torch_search.nvidia_driver", lambda: True)


class _FailingGpuIndex:  # test-only stand-in for a FAISS GPU index whose search fails
    def search(self, queries, k):
        raise RuntimeError("CUDA error: out of memory")


def _index(tmp_path, bridge_file):
    media = tmp_path / "media"
    images = [write_image(media / f"p{i}.png", seed=i) for i in range(8)]
    sound = write_audio(media / "s.wav", seed=1)
    index_folder(media, tmp_path / "index", [bridge_file], encoder_loader=FakeLoader())
    return images, sound


def test_cpu_engine_is_reported(tmp_path, bridge_file, monkeypatch) -> None:
    images, sound = _index(tmp_path, bridge_file)
    engine = SearchEngine(Index.open(tmp_path / "index", encoder_loader=FakeLoader()))
    (result,) = engine.search_file(sound, "audio", "image", k=3)
    assert (result.engine, result.index_kind) == ("numpy", "flat") and len(result.hits) == 3
    assert result.to_dict()["engine"] == "numpy"
    _with_driver(monkeypatch)  # FAISS is asked and has no GPU: its CPU index answers, with the same hits
    monkeypatch.setattr("avsearch.store.ann_files.maybe_gpu", lambda index: (index, False))
    (by_faiss,) = SearchEngine(Index.open(tmp_path / "index", encoder_loader=FakeLoader())).search_file(
        sound, "audio", "image", k=3
    )
    assert (by_faiss.engine, by_faiss.index_kind) == ("faiss-cpu", "flat")
    assert [h.path for h in by_faiss.hits] == [h.path for h in result.hits]
    np.testing.assert_allclose([h.score for h in by_faiss.hits], [h.score for h in result.hits], atol=1e-6)


def test_a_failing_gpu_index_falls_back_with_one_warning(tmp_path, bridge_file, monkeypatch, caplog) -> None:
    images, sound = _index(tmp_path, bridge_file)
    expected = SearchEngine(Index.open(tmp_path / "index", encoder_loader=FakeLoader())).search_file(
        sound, "audio", "image", k=5
    )[0]
    _with_driver(monkeypatch)
    monkeypatch.setattr("avsearch.store.ann_files.maybe_gpu", lambda index: (_FailingGpuIndex(), True))
    engine = SearchEngine(Index.open(tmp_path / "index", encoder_loader=FakeLoader()))
    with caplog.at_level(logging.WARNING):
        first = engine.search_file(sound, "audio", "image", k=5)[0]
        second = engine.search_file(sound, "audio", "image", k=5)[0]
    assert [h.path for h in first.hits] == [h.path for h in expected.hits] == [h.path for h in second.hits]
    np.testing.assert_allclose([h.score for h in first.hits], [h.score for h in expected.hits])
    assert first.engine == second.engine == "faiss-cpu"
    warnings = [r.message for r in caplog.records if "GPU search" in r.message]
    assert len(warnings) == 1 and "searching on the CPU from now on" in warnings[0]


def test_device_cpu_never_moves_indexes_to_a_gpu(tmp_path, bridge_file, monkeypatch) -> None:
    images, sound = _index(tmp_path, bridge_file)
    moved: list[str] = []
    _with_driver(monkeypatch)
    monkeypatch.setattr("avsearch.store.ann_files.maybe_gpu", lambda index: moved.append("gpu") or (index, True))
    cpu = SearchEngine(Index.open(tmp_path / "index", device="cpu", encoder_loader=FakeLoader()))
    assert cpu.search_file(sound, "audio", "image", k=2)[0].engine == "numpy" and moved == []
    gpu = SearchEngine(Index.open(tmp_path / "index", device="cuda", encoder_loader=FakeLoader()))
    assert gpu.search_item(str(images[0]), "image", k=2)[0].engine == "faiss-gpu" and moved == ["gpu"]


def test_torch_exact_search_agrees_with_faiss_flat() -> None:
    import faiss

    from avsearch.store.torch_search import TorchExact

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:20] + 0.1 * rng.standard_normal((20, 64)).astype(np.float32)
    flat = faiss.IndexFlatIP(64)
    flat.add(vectors)
    want_scores, want_ids = flat.search(queries, 10)
    exact = TorchExact.from_flat(flat, "cpu", half=False)
    scores, ids = exact.search(queries, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    half_scores, half_ids = TorchExact.from_flat(flat, "cpu", half=True).search(queries, 10)
    assert (half_ids[:, 0] == want_ids[:, 0]).all() and np.abs(half_scores - want_scores).max() < 5e-3


def test_when_faiss_has_no_gpu_but_torch_has_one_flat_indexes_search_in_torch(tmp_path, bridge_file, monkeypatch):
    images, sound = _index(tmp_path, bridge_file)
    expected = SearchEngine(Index.open(tmp_path / "index", device="cpu", encoder_loader=FakeLoader()))
    want = expected.search_file(sound, "audio", "image", k=4)[0]
    _with_driver(monkeypatch)
    monkeypatch.setattr("avsearch.store.ann_files.torch_gpu", lambda: "cpu")  # test-only: torch's CPU stands in
    engine = SearchEngine(Index.open(tmp_path / "index", encoder_loader=FakeLoader()))
    got = engine.search_file(sound, "audio", "image", k=4)[0]
    assert got.engine == "torch-cuda" and [h.path for h in got.hits] == [h.path for h in want.hits]
    np.testing.assert_allclose([h.score for h in got.hits], [h.score for h in want.hits], atol=5e-3)


def test_info_says_which_engine_will_search(tmp_path, bridge_file, monkeypatch) -> None:
    from typer.testing import CliRunner

    from avsearch.cli.app import app

    _index(tmp_path, bridge_file)
    args = ["info", "--index-dir", str(tmp_path / "index")]
    assert "search     faiss-cpu (no GPU)" in CliRunner().invoke(app, args).stdout
    _with_driver(monkeypatch)
    assert "search     faiss-cpu (no GPU)" in CliRunner().invoke(app, args).stdout  # asked: none
    monkeypatch.setattr("avsearch.store.torch_search.torch_gpu", lambda: "cuda")
    assert "search     torch-cuda (FAISS sees no GPU; torch does)" in CliRunner().invoke(app, args).stdout
    monkeypatch.setattr(ann_module, "gpu_count", lambda: 2)
    assert "search     faiss-gpu (2 GPU)" in CliRunner().invoke(app, args).stdout
    monkeypatch.setenv("AVSEARCH_DEVICE", "cpu")
    assert "search     faiss-cpu (--device/AVSEARCH_DEVICE asks for the CPU)" in CliRunner().invoke(app, args).stdout
