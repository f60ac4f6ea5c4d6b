"""FAISS index choice and cross-modal recall tuning on synthetic vectors with a modality gap."""

from __future__ import annotations

import numpy as np
import pytest

from avsearch.store.ann import (
    FLAT,
    IVF_FLAT,
    IVF_PQ,
    IVF_SQ8,
    build_index,
    choose_kind,
    exact_topk,
    recall_at_k,
)
from avsearch.store.ann_files import load_ann, save_ann
from avsearch.store.config import AnnConfig, load_search_config
from tests.store.synthetic import gap_data

SMALL = AnnConfig(exact_max_vectors=1000, memory_budget_gb=1.0, max_tuning_queries=400)


def test_bundled_config_loads() -> None:
    cfg = load_search_config()
    assert 0 < cfg.ann.target_recall <= 1
    assert cfg.ann.tuning_captions, "captions for tuning text-query indexes are configured"


def test_choice_by_size_and_memory() -> None:
    cfg = AnnConfig(exact_max_vectors=100, memory_budget_gb=1.0)
    assert choose_kind(100, 512, cfg) == FLAT
    assert choose_kind(101, 512, cfg) == IVF_FLAT
    assert choose_kind(1_000_000, 512, cfg) == IVF_SQ8  # 2 GB of floats > 1 GB budget, 0.5 GB codes fit
    assert choose_kind(4_000_000, 512, cfg) == IVF_PQ


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
