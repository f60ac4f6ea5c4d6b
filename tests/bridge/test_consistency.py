import numpy as np
import pytest
import torch

from avsearch.bridge import consistency
from avsearch.bridge.config import load_train_config, with_overrides
from avsearch.bridge.consistency import (
    ConsistencyReport,
    choose_backend,
    consistency_pass,
    pseudo_embeddings,
    row_cosine,
    tune_nprobe,
)
from avsearch.bridge.memory_index import build_clustered_memory, clustered_pseudo
from avsearch.bridge.synthetic import SyntheticSpec, make_synthetic
from avsearch.errors import ConfigError


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _dense(q: np.ndarray, m: np.ndarray, tau: float) -> np.ndarray:
    w = torch.softmax(torch.from_numpy(q @ m.T) / tau, dim=1).numpy()
    return w @ m


@pytest.mark.parametrize("tau", [0.01, 0.1, 1.0])
def test_exact_chunked_softmax_equals_the_dense_formula(tau):
    q, m = _unit(257, 32, 0), _unit(3001, 32, 1)
    got = pseudo_embeddings(q, m, tau, query_chunk=100, memory_chunk=512)
    np.testing.assert_allclose(got, _dense(q, m, tau), atol=2e-6)


def test_chunk_sizes_do_not_change_the_result():
    q, m = _unit(64, 16, 2), _unit(1000, 16, 3)
    a = pseudo_embeddings(q, m, 0.01, query_chunk=7, memory_chunk=13)
    b = pseudo_embeddings(q, m, 0.01, query_chunk=64, memory_chunk=1000)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_argmax_picks_the_most_similar_memory_row_across_chunks():
    q, m = _unit(50, 16, 4), _unit(999, 16, 5)
    got = pseudo_embeddings(q, m, 0.01, mode="argmax", memory_chunk=100)
    np.testing.assert_array_equal(got, m[(q @ m.T).argmax(axis=1)])


def test_random_is_seeded_rows_of_the_memory():
    q, m = _unit(40, 8, 6), _unit(500, 8, 7)
    a = pseudo_embeddings(q, m, 0.01, mode="random", seed=3)
    assert np.array_equal(a, pseudo_embeddings(q, m, 0.01, mode="random", seed=3))
    assert not np.array_equal(a, pseudo_embeddings(q, m, 0.01, mode="random", seed=4))
    rows = {r.tobytes() for r in m}
    assert all(r.tobytes() in rows for r in a)


def test_approx_over_every_list_equals_exact():
    # Probing all lists leaves only the order of summation: the online softmax across lists is exact.
    q, m = _unit(300, 32, 8), _unit(5000, 32, 9)
    index = build_clustered_memory(m, 40, seed=1)
    for tau in (0.01, 0.1):
        got = clustered_pseudo(q, index, tau, nprobe=40, batch=128)
        np.testing.assert_allclose(got, _dense(q, m, tau), atol=2e-5)
    argmax = clustered_pseudo(q, index, 0.01, nprobe=40, mode="argmax")
    np.testing.assert_array_equal(argmax, m[(q @ m.T).argmax(axis=1)])


def test_lists_left_empty_are_never_probed():
    # Duplicate rows make duplicate centroids: all but one of each stay empty after the assignment.
    q, m = _unit(30, 16, 14), np.repeat(_unit(20, 16, 15), 10, axis=0)
    index = build_clustered_memory(m, 60, seed=2)
    assert min(b - a for a, b in zip(index.offsets, index.offsets[1:], strict=False)) == 0
    got = clustered_pseudo(q, index, 0.01, nprobe=index.nlist)
    np.testing.assert_allclose(got, _dense(q, m, 0.01), atol=2e-5)


@pytest.fixture(scope="module")
def structured() -> tuple[np.ndarray, np.ndarray]:
    """Texts against an image memory of 40k rows in one synthetic space: concept clusters, a modality gap."""
    # 40 concepts: ~1,000 memory rows a concept, the density of a 1M-row memory of 1,000 concepts
    data = make_synthetic(SyntheticSpec(concepts=40, n_text=800, n_memory=40_000, n_test=1, dim=256, seed=3))
    return data.text_a, data.image_a


def test_approx_is_within_a_thousandth_of_exact_on_a_structured_memory(structured):
    texts, memory = structured
    tune, measured = texts[:200], texts[200:]  # the budget is tuned on queries that are not measured
    index = build_clustered_memory(memory, seed=0)
    nprobe = tune_nprobe(tune, memory, index, 0.01, target=0.999)
    assert nprobe <= index.nlist // 2, f"needs {nprobe} of {index.nlist} lists: little saving over exact"
    approx = pseudo_embeddings(measured, memory, 0.01, backend="approx", index=index, nprobe=nprobe)
    cos = row_cosine(pseudo_embeddings(measured, memory, 0.01), approx)
    assert cos.mean() >= 0.999, (nprobe, cos.mean(), cos.min())
    assert cos.min() >= 0.95, (nprobe, cos.mean(), cos.min())


def test_consistency_pass_tunes_and_reports_its_deviation(structured):
    texts, memory = structured
    out, report = consistency_pass(texts[:300], memory, 0.01, backend="auto", approx_above=40_000, check_queries=64)
    assert out.shape == (300, memory.shape[1])
    assert report.backend == "approx" and report.checked == 64 and 0 < report.nprobe < report.nlist
    # the figures are those of the check rows (the pass's second seeded sample: seed 0, 64 of 300) against exact
    check = np.sort(np.random.default_rng(0).choice(300, size=128, replace=False))[1::2]
    cos = row_cosine(pseudo_embeddings(texts[:300][check], memory, 0.01), out[check])
    assert report.mean_cos >= 0.999 and report.mean_cos == pytest.approx(float(cos.mean()), abs=1e-6)
    assert report.min_cos == pytest.approx(float(cos.min()), abs=1e-6) and report.min_cos < report.mean_cos
    assert "consistency: approx on cpu" in report.line() and "nprobe" in report.line()


def test_auto_picks_exact_on_cuda_and_approx_on_a_large_cpu_memory():
    assert choose_backend("auto", "cuda", 10**7, 100_000) == "exact"
    assert choose_backend("auto", torch.device("cuda:1"), 10**7, 100_000) == "exact"
    assert choose_backend("auto", "cpu", 100_000, 100_000) == "approx"
    assert choose_backend("auto", "cpu", 99_999, 100_000) == "exact"
    assert choose_backend("exact", "cpu", 10**7, 100_000) == "exact"
    assert choose_backend("approx", "cuda", 10, 100_000) == "approx"
    with pytest.raises(ConfigError, match="valid: exact, approx, auto"):
        choose_backend("faiss", "cpu", 10, 100_000)
    assert load_train_config("audio_visual").consistency.backend == "auto"
    line = ConsistencyReport("exact", "cuda", 1_800_000).line()
    assert line.startswith("consistency: exact on cuda")


def test_small_memories_stay_exact_under_auto():
    q, m = _unit(20, 16, 12), _unit(500, 16, 13)
    out, report = consistency_pass(q, m, 0.01, backend="auto", approx_above=1000)
    assert report.backend == "exact"
    np.testing.assert_allclose(out, _dense(q, m, 0.01), atol=2e-6)


def test_training_builds_each_memory_index_once(monkeypatch, synthetic, quick_config):
    from avsearch.bridge.data import BridgeData
    from avsearch.bridge.train import train_bridge

    builds, passes = [], []
    real_build, real_pass = consistency.build_clustered_memory, consistency.clustered_pseudo

    def counting_build(memory, *args, **kwargs):
        builds.append(memory.shape[0])
        return real_build(memory, *args, **kwargs)

    def counting_pass(queries, *args, **kwargs):
        passes.append(queries.shape[0])
        return real_pass(queries, *args, **kwargs)

    monkeypatch.setattr(consistency, "build_clustered_memory", counting_build)
    monkeypatch.setattr(consistency, "clustered_pseudo", counting_pass)
    cfg = with_overrides(quick_config, epochs=3, batch_size=256, backend="approx", nprobe=4, check_queries=32)
    texts, memory = (synthetic.text_a[:1000], synthetic.text_b[:1000]), (synthetic.image_a[:2000], synthetic.audio_b)
    result = train_bridge(cfg, BridgeData(texts, memory, "synthetic"), progress=False)
    assert len(result.history) == 3
    assert builds == [2000, len(synthetic.audio_b)]  # once per memory, not per epoch
    assert passes == [1000, 1000]  # one pass per side over all captions
    assert [r.backend for r in result.consistency] == ["approx", "approx"]
    saved = result.bridge.meta.metrics["consistency"]
    assert [r["nprobe"] for r in saved] == [4, 4] and all(r["checked"] == 32 for r in saved)
