"""Per-query-kind settings (issue 26, goal 1): a build tunes nprobe/k_factor for queries of the indexed
modality itself as well as for cross-modal ones, and a loaded index answers each kind with its own,
without the route shift for same-modality queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avsearch.cli.common import faiss_summary
from avsearch.store.ann import IVF_RABITQ_REFINE, exact_topk, recall_at_k
from avsearch.store.ann_build import build_index
from avsearch.store.ann_files import load_ann, save_ann
from avsearch.store.ann_search import search_parameters
from avsearch.store.config import AnnConfig

N, DIM = 6_000, 32
CFG = AnnConfig(exact_max_vectors=1000, max_tuning_queries=300, query_guided=False, lists_per_sqrt_n=1.0)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _world() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, cross-modal queries, same-modality queries): 40 centres, the queries in another cone."""
    rng = np.random.default_rng(4)
    centres = _unit(rng.standard_normal((40, DIM)))
    g_data, g_query = _unit(rng.standard_normal((2, DIM)))

    def side(k: int, gap: np.ndarray) -> np.ndarray:
        return _unit(centres[rng.integers(40, size=k)] + gap + rng.standard_normal((k, DIM)) * 0.8 / np.sqrt(DIM))

    return side(N, g_data), side(600, g_query), side(300, g_data)


def test_same_modality_queries_get_settings_of_their_own(tmp_path: Path) -> None:
    data, cross, own = _world()
    index, params = build_index(data, CFG, cross[:300], "test")
    assert params.kind == IVF_RABITQ_REFINE
    same = params.extra["same_modality"]
    assert same["heldout_recall"] >= CFG.target_recall and same["k_factor"] in CFG.k_factors
    # cross-modal queries need more lists here than the data's own: two settings, or one kind pays the other's
    assert (same["nprobe"], same["k_factor"]) != (params.nprobe, params.k_factor)
    # avsearch info says both
    shown = faiss_summary({**params.__dict__})
    assert f"same-modality queries nprobe {same['nprobe']}" in shown and f"{same['heldout_recall']:.3f}" in shown
    save_ann(tmp_path, "image.native", index, params, [f"{i}.jpg" for i in range(N)], 1)
    loaded = load_ann(tmp_path, "image.native", use_gpu=False)
    assert loaded.params.extra["same_modality"] == same
    # each kind of query is answered with its own settings: the very answers of an explicit search with them
    for cross_modal, (nprobe, k_factor) in (
        (True, (params.nprobe, params.k_factor)),
        (False, (same["nprobe"], same["k_factor"])),
    ):
        explicit = loaded.index.search(own, 10, params=search_parameters(params, nprobe=nprobe, k_factor=k_factor))
        got = loaded.search(own, 10, cross_modal=cross_modal)
        np.testing.assert_array_equal(got[1], explicit[1])
    truth = exact_topk(data, own, 10)
    assert recall_at_k(loaded.search(own, 10, cross_modal=False)[1], truth) >= CFG.target_recall - 0.02
    # with a filter: the same settings, and only rows the filter kept
    allowed = np.arange(0, N, 2)
    filtered = loaded.search(own[:20], 10, allowed, cross_modal=False)
    assert np.isin(filtered[1][filtered[1] >= 0], allowed).all()


def test_info_says_when_the_tuning_queries_were_stand_ins() -> None:
    """An index with no cross-modal queries to tune on (no other modality, no caption weights) is tuned on
    stand-ins made from its own vectors: `avsearch info` says so rather than claim real cross-modal ones."""
    built = {"kind": IVF_RABITQ_REFINE, "nlist": 100, "nprobe": 4, "k_factor": 8, "heldout_recall": 0.97}
    real = faiss_summary({**built, "tuning_queries": 1000, "tuning_source": "audio vectors projected by av"})
    stand_in = faiss_summary({**built, "tuning_queries": 1000, "tuning_source": "synthetic-gap"})
    assert "recall@10 0.970 on 500 held-out cross-modal queries" in real
    assert "recall@10 0.970 on 500 held-out stand-ins for cross-modal queries" in stand_in
