"""Query-guided spilling (store/ann_spill.py): which copies are planned, exact de-duplicated answers, and
the recall it buys for cross-modal queries at a small nprobe."""

from __future__ import annotations

import faiss
import numpy as np

from avsearch.store import ann_spill
from avsearch.store.ann import exact_topk
from avsearch.store.config import load_search_config


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _gap_sets(
    n: int, dim: int, concepts: int, seed: int, queries: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, test queries, query sample): concept centres plus noise, queries in another cone (shifted by
    another direction than the data), as benchmarks/search.py's medium case, small."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((concepts, dim)))
    g_data, g_query = _unit(rng.standard_normal((2, dim)))

    def side(k: int, shift: np.ndarray) -> np.ndarray:
        content = centres[rng.integers(concepts, size=k)]
        return _unit(content + shift + rng.standard_normal((k, dim)) * 0.7 / np.sqrt(dim))

    return side(n, g_data), side(queries, g_query), side(2000, g_query)


def _recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(got, truth, strict=True)]))


def test_spill_plan_copies_outside_neighbours_into_the_querys_nearest_list_by_votes() -> None:
    primary = np.array([0, 1, 2, 3, 4])
    # three sample queries, nearest lists first; neighbours are row ids
    query_lists = np.array([[0, 1, 9], [2, 0, 9], [3, 4, 9]])
    neighbours = np.array([[0, 2, 3], [2, 3, -1], [3, 2, 1]])
    rows, lists = ann_spill.spill_plan(primary, query_lists, neighbours, probe=2, cap=1)
    # query 0 probes {0, 1}: rows 2 and 3 lie outside -> list 0; query 1 probes {2, 0}: row 3 -> list 2;
    # query 2 probes {3, 4}: rows 2 and 1 -> list 3. Row 2 is wanted in 0 and 3 (one vote each): list 0
    # (the lower) under cap 1; row 3 in 0 and 2 (one each): list 0; row 1 in 3.
    assert dict(zip(rows.tolist(), lists.tolist(), strict=True)) == {1: 3, 2: 0, 3: 0}
    rows, lists = ann_spill.spill_plan(primary, query_lists, neighbours, probe=2, cap=2)
    assert sorted(zip(rows.tolist(), lists.tolist(), strict=True)) == [(1, 3), (2, 0), (2, 3), (3, 0), (3, 2)]
    # more votes win over a lower list number
    votes = np.array([[2, -1, -1], [2, -1, -1], [2, -1, -1]])
    lists_two = np.array([[0, 1, 9], [3, 1, 9], [3, 4, 9]])
    assert ann_spill.spill_plan(primary, lists_two, votes, probe=2, cap=1)[1].tolist() == [3]
    assert len(ann_spill.spill_plan(primary, query_lists, neighbours, probe=2, cap=0)[0]) == 0


def test_spilled_index_answers_the_exact_top_k_of_distinct_rows() -> None:
    data, queries, sample = _gap_sets(2000, 32, 40, seed=1)
    settings = ann_spill.SpillSettings(cap=3, probe=2)
    index, stats = ann_spill.build_spilled(data, sample, nlist=16, cfg=load_search_config().ann, settings=settings)
    assert stats["copies"] > 50  # the lists hold some rows twice or more
    assert faiss.extract_index_ivf(index.base).ntotal == len(data) + stats["copies"]
    faiss.extract_index_ivf(index.base).nprobe = 16  # every list: the candidates are every row and its copies
    index.k_factor = 300  # deep enough that every row reaches the re-ranking
    scores, ids = index.search(queries, 10)
    brute = data @ queries.T
    order = np.argsort(-brute, axis=0)[:10].T
    assert (ids == order).all()
    np.testing.assert_allclose(scores, np.take_along_axis(brute.T, order, 1), rtol=0, atol=1e-5)


def test_spilling_finds_cross_modal_neighbours_in_few_lists() -> None:
    data, queries, sample = _gap_sets(6000, 64, 60, seed=0, queries=500)
    truth = exact_topk(data, queries, 10)
    cfg = load_search_config().ann
    recall = {}
    for cap in (0, 2):  # 0: no spilling (the plain IVF over the same lists); no route shift in either
        settings = ann_spill.SpillSettings(cap=cap, route=False)
        index, _ = ann_spill.build_spilled(data, sample, 24, cfg=cfg, settings=settings)
        faiss.extract_index_ivf(index.base).nprobe = 2
        index.k_factor = 16
        recall[cap] = _recall(index.search(queries, 10)[1], truth)
    # measured: 0.92 spilled, 0.78 not (on queries the spilling never saw)
    assert recall[2] >= 0.88
    assert recall[2] - recall[0] >= 0.08


def test_sample_neighbours_found_through_the_lists_are_most_of_the_exact_ones() -> None:
    data, _, sample = _gap_sets(3000, 32, 30, seed=2)
    # a large sample finds its neighbours through the lists (here every list), not exactly
    settings = ann_spill.SpillSettings(cap=0, exact_pairs=0, plan_probe_div=1)
    index, _ = ann_spill.build_spilled(data, sample[:300], nlist=12, cfg=load_search_config().ann, settings=settings)
    got = ann_spill.sample_neighbours(index, sample[:300], settings)
    # 1-bit codes re-ranked 8 deep: measured 0.896 (0.736 with one list probed)
    assert _recall(got, exact_topk(data, sample[:300], 10)) >= 0.85


def test_route_shift_probes_the_lists_where_cross_modal_neighbours_are() -> None:
    data, queries, sample = _gap_sets(6000, 64, 60, seed=0, queries=500)
    truth = exact_topk(data, queries, 10)
    settings = ann_spill.SpillSettings(cap=0)  # routing alone, no copies
    index, stats = ann_spill.build_spilled(data, sample, 24, cfg=load_search_config().ann, settings=settings)
    assert stats["route_shift"] == 1 and index.shift is not None
    faiss.extract_index_ivf(index.base).nprobe = 2
    index.k_factor = 16
    routed = _recall(index.search(queries, 10)[1], truth)
    plain = _recall(index.search(queries, 10, cross_modal=False)[1], truth)
    # measured: 0.994 routed, 0.78 by the query's own nearest lists
    assert routed >= 0.95
    assert routed - plain >= 0.1
    # queries of the indexed modality itself are not moved: the index's lists nearest to them, as without a shift
    shift, index.shift = index.shift, None
    unshifted = index.search(queries, 10)
    index.shift = shift
    np.testing.assert_array_equal(plain, _recall(unshifted[1], truth))


def test_routed_search_keeps_to_the_selector_and_scores_exactly() -> None:
    data, queries, sample = _gap_sets(3000, 32, 30, seed=3)
    index, _ = ann_spill.build_spilled(data, sample, 12, cfg=load_search_config().ann)
    assert index.shift is not None
    allowed = np.arange(0, len(data), 3)
    params = faiss.IndexRefineSearchParameters(
        k_factor=400.0, base_index_params=faiss.SearchParametersIVF(nprobe=12, sel=faiss.IDSelectorBatch(allowed))
    )
    scores, ids = index.search(queries, 10, params=params)
    brute = data[allowed] @ queries.T
    order = allowed[np.argsort(-brute, axis=0)[:10].T]
    assert (ids == order).all()  # every list probed, deep re-rank: the exact top-10 of the allowed rows
    np.testing.assert_allclose(scores, np.sort(brute, axis=0)[::-1][:10].T, rtol=0, atol=1e-5)
