"""store/exact.py: a flat build searched in numpy answers as FAISS's IndexFlatIP does (same ids, scores
within float32 rounding), with and without a selection of rows, and with fewer rows than k."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from avsearch.store.exact import FlatVectors


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((500, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:6] + 0.2 * rng.standard_normal((6, 32)).astype(np.float32)
    return vectors, queries


@pytest.mark.parametrize("k", [1, 10, 499, 500])
def test_same_hits_as_faiss_flat(data: tuple[np.ndarray, np.ndarray], k: int) -> None:
    vectors, queries = data
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    want_scores, want_ids = flat.search(queries, k)
    scores, ids = FlatVectors(vectors).search(queries, k)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)


@pytest.mark.parametrize("kept", [[7], [3, 400, 17, 250], list(range(0, 500, 3))])
def test_a_selection_equals_faiss_with_its_selector(data: tuple[np.ndarray, np.ndarray], kept: list[int]) -> None:
    vectors, queries = data
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    allowed = np.array(kept, np.int64)
    params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
    want_scores, want_ids = flat.search(queries, 10, params=params)
    scores, ids = FlatVectors(vectors).search(queries, 10, allowed)
    np.testing.assert_array_equal(ids, want_ids)  # -1 where fewer rows than k were kept
    found = want_ids >= 0
    np.testing.assert_allclose(scores[found], want_scores[found], atol=1e-6)
    assert np.isin(ids[found], allowed).all() and (found.sum(axis=1) == min(10, len(kept))).all()


def test_ties_in_row_order() -> None:
    vectors = np.tile(np.eye(4, dtype=np.float32)[:1], (6, 1))  # six equal rows
    scores, ids = FlatVectors(vectors).search(np.eye(4, dtype=np.float32)[:1], 4)
    assert ids.tolist() == [[0, 1, 2, 3]] and scores.tolist() == [[1.0] * 4]
