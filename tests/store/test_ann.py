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
    _smallest_nprobe,
    build_index,
    choose_kind,
    exact_topk,
    recall_at_k,
    search_parameters,
)
from avsearch.store.ann_files import load_ann, save_ann
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
    data, queries = gap_data(20_000, 400, seed=2)
    _, cross = build_index(data, SMALL, queries, "cross")
    _, same = build_index(data, SMALL, data[:400] + 0.0, "same")
    assert cross.nprobe >= same.nprobe


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


@pytest.mark.parametrize("kind_budget", [0.002, 0.0005])
def test_compressed_kinds_build_and_report_recall(kind_budget: float) -> None:
    cfg = AnnConfig(exact_max_vectors=1000, memory_budget_gb=kind_budget, max_tuning_queries=200)
    data, queries = gap_data(12_000, 200, dim=64, seed=5)
    _, params = build_index(data, cfg, queries)
    assert params.kind in (IVF_SQ8, IVF_PQ)
    assert params.heldout_recall is not None and 0 < params.heldout_recall <= 1


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


def test_many_lists_get_an_hnsw_coarse_quantizer() -> None:
    data, queries = gap_data(20_000, 200, seed=6)
    cfg = replace(REFINED_CFG, hnsw_coarse_min_lists=256, lists_per_sqrt_n=4.0)  # 565 lists
    index, params = build_index(data, cfg, queries)
    quantizer = faiss.downcast_index(faiss.extract_index_ivf(index).quantizer)
    assert params.coarse == "hnsw" and isinstance(quantizer, faiss.IndexHNSWFlat)
    assert params.heldout_recall is not None and params.heldout_recall >= cfg.target_recall


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
