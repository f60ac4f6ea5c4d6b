import numpy as np
import pytest
import torch

from avsearch.bridge import consistency
from avsearch.bridge.consistency import pseudo_embeddings


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


def test_faiss_topk_is_close_to_exact_at_paper_temperature():
    q, m = _unit(200, 32, 8), _unit(5000, 32, 9)
    exact = pseudo_embeddings(q, m, 0.01)
    approx = pseudo_embeddings(q, m, 0.01, backend="faiss", topk=128)
    assert np.abs(exact - approx).max() < 1e-2
    # Keeping only one neighbour is the argmax ablation and must be far coarser than top-128.
    one = pseudo_embeddings(q, m, 0.01, backend="faiss", topk=1)
    assert np.abs(exact - one).max() > np.abs(exact - approx).max()


def test_faiss_ivf_path_is_used_for_large_memories(monkeypatch):
    monkeypatch.setattr(consistency, "FLAT_BELOW", 1000)
    q, m = _unit(100, 16, 10), _unit(4000, 16, 11)
    index = consistency.build_memory_index(m, nprobe=8)
    assert type(index).__name__ == "IndexIVFFlat"
    approx = pseudo_embeddings(q, m, 0.01, backend="faiss", topk=64, nprobe=64)
    np.testing.assert_allclose(approx, pseudo_embeddings(q, m, 0.01), atol=5e-2)
