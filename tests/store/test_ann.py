"""FAISS index choice and cross-modal recall tuning on synthetic vectors with a modality gap."""

from __future__ import annotations

from dataclasses import replace

import faiss
import numpy as np
import pytest

from avsearch.errors import ConfigError
from avsearch.store.ann import (
    FLAT,
    IVF_FLAT,
    IVF_PQ,
    IVF_RABITQ_REFINE,
    IVF_SQ8,
    IVF_SQ8_REFINE,
    choose_kind,
    exact_topk,
    recall_at_k,
)
from avsearch.store.ann_build import build_index
from avsearch.store.ann_files import load_ann, save_ann
from avsearch.store.ann_search import search_parameters
from avsearch.store.ann_tune import _smallest_nprobe
from avsearch.store.config import AnnConfig, load_search_config
from tests.store.synthetic import gap_data

SMALL = AnnConfig(exact_max_vectors=1000, memory_budget_gb=1.0, max_tuning_queries=400, refined_codes="none")


def test_bundled_config_loads() -> None:
    cfg = load_search_config()
    assert 0 < cfg.ann.target_recall <= 1
    assert cfg.ann.tuning_captions, "captions for tuning text-query indexes are configured"


def test_choice_by_size_and_memory() -> None:
    cfg = AnnConfig(exact_max_vectors=100, memory_budget_gb=1.0)
    assert choose_kind(100, 512, cfg, gpu=False) == FLAT
    assert choose_kind(101, 512, cfg, gpu=False) == IVF_RABITQ_REFINE  # full vectors fit: codes + re-ranking
    assert choose_kind(101, 512, replace(cfg, refined_codes="sq8"), gpu=False) == IVF_SQ8_REFINE
    assert choose_kind(101, 512, replace(cfg, refined_codes="none"), gpu=False) == IVF_FLAT
    assert choose_kind(101, 512, cfg, gpu=True) == IVF_FLAT  # searched on the GPU; refined kinds have no GPU form
    assert choose_kind(1_000_000, 512, cfg, gpu=False) == IVF_SQ8  # 2 GB of floats > 1 GB budget, 0.5 GB codes fit
    assert choose_kind(4_000_000, 512, cfg, gpu=False) == IVF_PQ


def test_bad_refined_codes_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="refined_codes"):
        AnnConfig(refined_codes="pq")
    with pytest.raises(ConfigError, match="k_factors"):
        AnnConfig(k_factors=(0, 4))
    with pytest.raises(ConfigError, match=r"rerank_from = 'disk': expected 'table' or 'file'"):
        AnnConfig(rerank_from="disk")


def test_recall_at_k_by_hand() -> None:
    exact = np.array([[2, 1, 9], [5, 6, 7]])
    approx = np.array([[0, 1, 2], [5, -1, 7]])  # row 0: {1, 2} of 3; row 1: {5, 7} of 3 (-1: no result)
    assert recall_at_k(approx, exact) == pytest.approx(2 / 3, abs=1e-12)
    assert recall_at_k(np.array([[3, 3, 3]]), np.array([[3, 4, 5]])) == pytest.approx(1 / 3, abs=1e-12)  # once
    assert recall_at_k(np.array([[-1, -1]]), np.array([[0, 1]])) == 0.0
    assert recall_at_k(np.array([[1, 0], [4, 2]]), np.array([[0, 1], [3, 4]])) == 0.75  # order does not count
    assert recall_at_k(np.zeros((0, 10), np.int64), np.zeros((0, 10), np.int64)) == 1.0  # nothing to find


def test_small_index_is_exact() -> None:
    data, queries = gap_data(500, 50)
    index, params = build_index(data, SMALL, queries)
    assert params.kind == FLAT
    assert recall_at_k(index.search(queries, 10)[1], exact_topk(data, queries, 10)) == 1.0


def test_ivf_reaches_target_recall_for_cross_modal_queries() -> None:
    data, queries = gap_data(20_000, 600, seed=1)
    index, params = build_index(data, SMALL, queries[:400], "synthetic cross-modal")
    assert params.kind == IVF_FLAT and params.nlist > 1
    assert params.heldout_recall is not None and params.heldout_recall >= SMALL.target_recall
    fresh = queries[400:]  # never seen by tuning
    got = recall_at_k(index.search(fresh, 10)[1], exact_topk(data, fresh, 10))
    assert got >= SMALL.target_recall - 0.02  # sampling noise on 200 fresh queries


def test_cross_modal_queries_need_more_probes_than_in_distribution_ones() -> None:
    # gap 2: the query cone is well apart from the data's (at gap 1 this data needs the same nprobe for both:
    # measured 3 and 3 of 512 lists); in-distribution queries are fresh draws from the data's cone
    both, cross_q = gap_data(20_400, 400, gap=2.0, seed=2)
    data, same_q = both[:20_000], both[20_000:]
    index, cross = build_index(data, SMALL, cross_q, "cross")
    _, same = build_index(data, SMALL, same_q, "same")
    assert cross.nlist == same.nlist == 512
    assert cross.nprobe >= 2 * same.nprobe  # measured 11 and 3
    # ...because at the in-distribution setting cross-modal queries miss the target (measured 0.84 vs 0.98)
    truth = exact_topk(data, cross_q, 10)
    at_same = recall_at_k(index.search(cross_q, 10, params=search_parameters(cross, nprobe=same.nprobe))[1], truth)
    assert at_same < SMALL.target_recall - 0.1 and same.heldout_recall >= SMALL.target_recall


def test_update_reuses_training_and_save_load_roundtrip(tmp_path) -> None:
    data, queries = gap_data(8_000, 200, seed=3)
    index, params = build_index(data, SMALL, queries)
    save_ann(tmp_path, "image.projected", index, params, [f"f{i}" for i in range(len(data))], 7)
    loaded = load_ann(tmp_path, "image.projected")
    assert loaded is not None and loaded.table_version == 7 and loaded.params.nprobe == params.nprobe
    more = np.concatenate([data, gap_data(2_000, 1, seed=4)[0]])
    index2, params2 = build_index(more, SMALL, queries, trained=(loaded.index, loaded.params))
    assert params2.n == len(more) and params2.nlist == params.nlist
    assert index2.ntotal == len(more)
    scores, ids = loaded.search(queries[:3], 5, allowed=np.arange(0, 8_000, 2))
    assert (ids % 2 == 0).all() and scores.shape == (3, 5)


@pytest.mark.parametrize("kind_budget, kind", [(0.002, IVF_SQ8), (0.0005, IVF_PQ)])
def test_compressed_kinds_build_and_report_recall(kind_budget: float, kind: str) -> None:
    cfg = AnnConfig(exact_max_vectors=1000, memory_budget_gb=kind_budget, max_tuning_queries=200)
    data, queries = gap_data(12_000, 400, dim=64, seed=5)
    index, params = build_index(data, cfg, queries[:200])
    assert params.kind == kind and params.heldout_recall is not None
    fresh = queries[200:]  # the recorded recall is what a search at the tuned setting gets (sampling noise)
    truth = exact_topk(data, fresh, 10)
    got = recall_at_k(index.search(fresh, 10)[1], truth)
    assert abs(got - params.heldout_recall) <= 0.04
    if kind == IVF_SQ8:  # 8-bit codes lose little: the target is reached (measured 0.985 held out, 0.99 fresh)
        assert params.heldout_recall >= cfg.target_recall and got >= cfg.target_recall - 0.02
    else:  # 8-byte PQ codes cap recall (measured 0.63): reported as it is, and probing every list adds nothing
        every = recall_at_k(index.search(fresh, 10, params=search_parameters(params, nprobe=params.nlist))[1], truth)
        assert 0.5 < params.heldout_recall < cfg.target_recall - 0.2 and abs(every - got) <= 0.02


# Refined kinds: IVF lists of compact codes, the best k x k_factor re-ranked on the full vectors.
REFINED_CFG = AnnConfig(exact_max_vectors=1000, memory_budget_gb=1.0, max_tuning_queries=400, refined_codes="rabitq")


@pytest.mark.parametrize("codes, kind", [("rabitq", IVF_RABITQ_REFINE), ("sq8", IVF_SQ8_REFINE)])
def test_refined_kinds_reach_target_recall_on_fresh_cross_modal_queries(codes: str, kind: str) -> None:
    data, queries = gap_data(20_000, 600, seed=1)
    cfg = replace(REFINED_CFG, refined_codes=codes)
    index, params = build_index(data, cfg, queries[:400], "synthetic cross-modal")
    assert params.kind == kind and params.k_factor in cfg.k_factors and params.nprobe >= 1
    assert params.heldout_recall is not None and params.heldout_recall >= cfg.target_recall
    fresh = queries[400:]  # never seen by tuning; a plain search must use the tuned nprobe and k_factor
    got = recall_at_k(index.search(fresh, 10)[1], exact_topk(data, fresh, 10))
    assert got >= cfg.target_recall - 0.02  # sampling noise on 200 fresh queries
    # the scores of a refined search are exact inner products (re-ranked on the full vectors)
    scores, ids = index.search(fresh[:5], 10)
    expected = np.einsum("qd,qkd->qk", fresh[:5], data[ids])
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)


def test_refined_index_with_a_row_selector_equals_exact_search_over_the_passing_rows(tmp_path) -> None:
    data, queries = gap_data(8_000, 100, seed=3)
    index, params = build_index(data, REFINED_CFG, queries)
    assert params.kind == IVF_RABITQ_REFINE
    save_ann(tmp_path, "image.projected", index, params, [f"f{i}" for i in range(len(data))], 7)
    loaded = load_ann(tmp_path, "image.projected")
    assert loaded is not None and (loaded.params.nprobe, loaded.params.k_factor) == (params.nprobe, params.k_factor)
    assert faiss.downcast_index(loaded.index).k_factor == params.k_factor  # the tuned depth is set on load
    allowed = np.arange(1, 8_000, 3)
    sel = faiss.IDSelectorBatch(allowed.astype(np.int64))
    every = search_parameters(loaded.params, sel=sel, nprobe=loaded.params.nlist, k_factor=64)
    _, ids = loaded.index.search(queries[:20], 10, params=every)
    truth = allowed[exact_topk(data[allowed], queries[:20], 10)]
    assert (ids == truth).all()
    _, tuned_ids = loaded.search(queries[:20], 10, allowed=allowed)
    assert np.isin(tuned_ids[tuned_ids >= 0], allowed).all()


def test_many_lists_get_an_hnsw_coarse_quantizer_with_the_flat_ones_lists() -> None:
    """The HNSW coarse quantizer (off by default: at 1M vectors and 16,000 lists a build measured recall 0.07,
    cause unknown, which 20k vectors cannot show) against its flat twin: the same centroids (FAISS trains an
    HNSW-coarse IVF through a flat index: quantizer_trains_alone 2), every vector added through the graph lands
    in the list the flat quantizer picks, every list is reachable through the graph, and the tuned search
    recalls what the flat twin recalls at the same setting."""
    data, queries = gap_data(20_000, 400, seed=6)
    cfg = replace(REFINED_CFG, hnsw_coarse_min_lists=256, lists_per_sqrt_n=4.0)  # 512 lists (39 points each)
    index, params = build_index(data, cfg, queries[:200])
    twin, flat = build_index(data, replace(cfg, hnsw_coarse_min_lists=10**9), queries[:200])
    ivf, twin_ivf = faiss.extract_index_ivf(index), faiss.extract_index_ivf(twin)
    quantizer = faiss.downcast_index(ivf.quantizer)
    assert params.coarse == "hnsw" and isinstance(quantizer, faiss.IndexHNSWFlat) and flat.coarse == "flat"
    assert params.nlist == flat.nlist == 512
    centroids = quantizer.storage.reconstruct_n(0, params.nlist)
    np.testing.assert_array_equal(centroids, twin_ivf.quantizer.reconstruct_n(0, flat.nlist))

    def list_of_each_vector(i: faiss.IndexIVF) -> np.ndarray:
        out = np.full(i.ntotal, -1, np.int64)
        for lst in range(i.nlist):
            out[faiss.rev_swig_ptr(i.invlists.get_ids(lst), i.invlists.list_size(lst))] = lst
        return out

    same_list = (list_of_each_vector(ivf) == list_of_each_vector(twin_ivf)).mean()
    assert same_list >= 0.999  # (the graph assigns approximately; measured 1.0)
    fresh = queries[200:]
    truth = exact_topk(data, fresh, 10)
    every = search_parameters(params, nprobe=params.nlist, k_factor=64)  # all lists, deep re-ranking: exact
    assert (index.search(fresh, 10, params=every)[1] == truth).all()
    got = recall_at_k(index.search(fresh, 10)[1], truth)
    at_same = search_parameters(flat, nprobe=params.nprobe, k_factor=params.k_factor)
    assert (
        got >= cfg.target_recall - 0.02
        and abs(got - recall_at_k(twin.search(fresh, 10, params=at_same)[1], truth)) <= 0.005
    )


def test_smallest_nprobe_bisects_and_stops_on_a_plateau() -> None:
    calls: list[int] = []

    def step(p: int) -> float:  # reaches the goal from 37 probes on
        calls.append(p)
        return 0.99 if p >= 37 else 0.5

    assert _smallest_nprobe(step, 1000, 0.97, capped=True) == (37, 0.99)

    def capped(p: int) -> float:  # compressed codes: recall stops growing at 0.9
        return min(0.9, 0.5 + p / 100)

    nprobe, got = _smallest_nprobe(capped, 100_000, 0.97, capped=True)
    assert got == pytest.approx(0.9) and nprobe <= 128  # gave up early instead of probing every list
    nprobe, got = _smallest_nprobe(capped, 4096, 0.97, capped=False)
    assert nprobe == 4096  # IVF-Flat: keeps doubling to every list


def test_smallest_nprobe_starts_where_told_and_gives_up_when_too_slow() -> None:
    """tune() searches the deepest re-ranking first: a shallower one starts at the lists that one needed,
    and gives up once its search, still short of the goal, is slower than a passing setting's."""
    calls: list[int] = []

    def step(p: int) -> float:  # reaches the goal from 37 probes on
        calls.append(p)
        return 0.99 if p >= 37 else 0.5

    assert _smallest_nprobe(step, 1000, 0.97, capped=True, start=20) == (37, 0.99)
    assert min(calls) == 20  # nothing under the start was searched
    calls.clear()
    nprobe, got = _smallest_nprobe(step, 1000, 0.97, capped=True, too_slow=lambda: calls[-1] >= 16)
    assert (nprobe, got) == (16, 0.5) and max(calls) == 16  # slower than a passing setting from 16 lists
