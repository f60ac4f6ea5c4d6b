"""The query-guided kind in the product (issue 26, goal 1): first of the chain when a build has a guiding
sample, saved with its full vectors in a file beside the index and its route shift in the JSON, loaded to
give the very answers of the index built, and updated on its trained lists with the spills made anew.

The world (as tests/store/test_ann_spill.py's): unit vectors around 60 centres plus one constant, the
queries around the same centres plus another (a modality gap), so the build learns a route shift."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from avsearch.store.ann import IVF_FLAT, IVF_RABITQ_GUIDED, IVF_RABITQ_REFINE, IVF_SQ8_REFINE, exact_topk, recall_at_k
from avsearch.store.ann_build import FALLBACKS, build_index, guided
from avsearch.store.ann_disk import VectorFile
from avsearch.store.ann_files import ANN_DIR, load_ann, save_ann
from avsearch.store.ann_search import search_parameters
from avsearch.store.ann_spill import SpillRefine
from avsearch.store.config import AnnConfig
from tests.store.s3_server import s3_server  # noqa: F401 (the session fixture)

N, DIM = 10_000, 64
# 100 lists: coarse enough that routing by the shift puts more true neighbours in the probed lists
CFG = AnnConfig(exact_max_vectors=1000, max_tuning_queries=400, guide_min_sample=500, lists_per_sqrt_n=1.0)
NAME = "image.proj_av"


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def world() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    centres = _unit(rng.standard_normal((60, DIM)))
    gap_data, gap_queries = _unit(rng.standard_normal((2, DIM)))

    def side(k: int, gap: np.ndarray) -> np.ndarray:
        return _unit(centres[rng.integers(60, size=k)] + gap + rng.standard_normal((k, DIM)) * 0.7 / np.sqrt(DIM))

    data, q = side(N, gap_data), side(3000, gap_queries)
    return {"data": data, "tune": q[:400], "guide": q[400:2400], "fresh": q[2400:]}


@pytest.fixture(scope="module")
def built(world):  # noqa: ANN001, ANN201
    return build_index(world["data"], CFG, world["tune"], "test", guide=world["guide"])


def test_the_guided_kind_is_built_first_when_there_is_a_guiding_sample(world, built) -> None:
    index, params = built
    assert params.kind == IVF_RABITQ_GUIDED and isinstance(index, SpillRefine)
    assert params.heldout_recall >= CFG.target_recall and params.k_factor in CFG.k_factors
    assert params.extra["spills"]["copies"] > 0 and params.extra["spills"]["guide_sample"] == 2000
    assert params.extra["spills"]["route_shift"] == 1 and index.shift.shape == (DIM,)
    got = recall_at_k(index.search(world["fresh"], 10)[1], exact_topk(world["data"], world["fresh"], 10))
    assert got >= CFG.target_recall - 0.03  # queries neither tuned on nor guiding
    assert FALLBACKS[IVF_RABITQ_GUIDED] == (IVF_SQ8_REFINE, IVF_FLAT)
    # no guided kind: too small a sample, the setting off, or codes other than RaBitQ
    assert guided(CFG, world["guide"][:500]) and not guided(CFG, world["guide"][:499])
    assert not guided(replace(CFG, query_guided=False), world["guide"]) and not guided(CFG, None)


def _answers(index, params, q: np.ndarray, cross_modal: bool, allowed: np.ndarray | None = None):  # noqa: ANN001, ANN202
    import faiss

    sel = None if allowed is None else faiss.IDSelectorBatch(allowed)
    if cross_modal:
        p = None if sel is None else search_parameters(params, sel=sel)
    else:  # queries of the indexed modality: the settings tuned for them
        own = params.extra["same_modality"]
        p = search_parameters(params, sel=sel, nprobe=own["nprobe"], k_factor=own["k_factor"])
    return index.search(q, 10, params=p, cross_modal=cross_modal)


def _same(got, want, held: type, data: np.ndarray, q: np.ndarray) -> None:  # noqa: ANN001
    """The same answers. Vectors in RAM: the very ids and scores. Read by row: the re-rank computes the
    same inner products in another order (numpy, not FAISS), so a near tie (1 ulp) may swap two ids; every
    score is then still the exact inner product of its id, and equal to the one built's at its rank."""
    if held is np.ndarray:
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
        return
    assert (got[1] == want[1]).mean() > 0.999
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-6)
    found = got[1] >= 0  # -1: fewer than k candidates came back (score -inf), as in the built index's answer
    exact = np.einsum("qkd,qd->qk", data[got[1]], q)
    np.testing.assert_allclose(got[0][found], exact[found], rtol=0, atol=1e-6)


def test_a_saved_guided_index_loads_to_the_same_answers(world, built, tmp_path: Path) -> None:
    index, params = built
    fresh = world["fresh"]
    routed, unrouted = _answers(index, params, fresh, True), _answers(index, params, fresh, False)
    one = search_parameters(params, nprobe=1)  # one list: where the shift routes matters most
    routed_one = index.search(fresh, 10, params=one)
    assert (routed_one[1] != index.search(fresh, 10, params=one, cross_modal=False)[1]).any()  # a dropped shift shows
    meta = save_ann(tmp_path, NAME, index, params, [f"p{i}" for i in range(N)], 3)
    vectors_file = tmp_path / ANN_DIR / meta["vectors"]
    assert vectors_file.stat().st_size == N * DIM * 4 and (tmp_path / ANN_DIR / meta["shift"]).is_file()
    allowed = np.arange(0, N, 3, dtype=np.int64)
    for budget, held in ((1.0, np.ndarray), (1e-6, VectorFile)):  # vectors in RAM, or read by row
        loaded = load_ann(tmp_path, NAME, use_gpu=False, memory_budget_gb=budget)
        assert isinstance(loaded.index, SpillRefine) and isinstance(loaded.index.vectors, held)
        assert (loaded.params.nprobe, loaded.params.k_factor) == (params.nprobe, params.k_factor)
        for cross_modal, want in ((True, routed), (False, unrouted)):
            _same(loaded.search(fresh, 10, cross_modal=cross_modal), want, held, world["data"], fresh)
        _same(loaded.index_search(fresh, 10, one), routed_one, held, world["data"], fresh)
        filtered = loaded.search(fresh, 10, allowed)
        _same(filtered, _answers(index, params, fresh, True, allowed), held, world["data"], fresh)
        assert np.isin(filtered[1], allowed).all()
    # a new build replaces the vectors file too (the old one is removed with its build)
    again = save_ann(tmp_path, NAME, index, params, [f"p{i}" for i in range(N)], 4)
    assert again["vectors"] != meta["vectors"] and not vectors_file.exists()
    assert not (tmp_path / ANN_DIR / meta["shift"]).exists()
    vectors_file = tmp_path / ANN_DIR / again["vectors"]
    vectors_file.write_bytes(vectors_file.read_bytes()[: -DIM * 4])  # a vectors file cut short: not used
    assert load_ann(tmp_path, NAME, use_gpu=False) is None


def test_an_update_keeps_the_trained_lists_and_spills_anew(world, built) -> None:
    import faiss

    index, params = built
    data = world["data"].copy()
    data[:500] = _unit(data[:500] + 0.5 * np.eye(DIM)[2])  # rows changed since the build
    updated, again = build_index(data, CFG, world["tune"], "test", trained=(index, params), guide=world["guide"])
    assert again.kind == IVF_RABITQ_GUIDED and again.nlist == params.nlist
    old, new = faiss.extract_index_ivf(index.base), faiss.extract_index_ivf(updated.base)
    np.testing.assert_array_equal(
        old.quantizer.reconstruct_n(0, old.nlist), new.quantizer.reconstruct_n(0, new.nlist)
    )  # the trained lists, not a new k-means
    copies = again.extra["spills"]["copies"]
    assert copies > 0 and new.ntotal == N + copies  # every row once, and the spilled copies again
    got = recall_at_k(updated.search(world["fresh"], 10)[1], exact_topk(data, world["fresh"], 10))
    assert got >= CFG.target_recall - 0.03


def test_a_guided_index_on_an_object_store(world, built, s3_server, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    """Its vectors file goes up with the build and comes down into a reader's cache, as the other files do."""
    from avsearch.store.location import Location

    index, params = built
    where = Location(f"s3://{s3_server.bucket}/guided-{tmp_path.name}", s3_server.options())
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "writer"))
    meta = save_ann(where, NAME, index, params, [f"p{i}" for i in range(N)], 1)
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "reader"))  # another machine
    loaded = load_ann(where, NAME, use_gpu=False, memory_budget_gb=1.0)
    assert isinstance(loaded.index.vectors, np.ndarray) and any((tmp_path / "reader").rglob(meta["vectors"]))
    _same(loaded.search(world["fresh"], 10), _answers(index, params, world["fresh"], True), np.ndarray, None, None)
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "writer"))
    again = save_ann(where, NAME, index, params, [f"p{i}" for i in range(N)], 2)
    stored = {name for name, _ in where.list(ANN_DIR)}
    assert {again["vectors"], again["shift"]} <= stored  # the old build's vectors and shift went with it
    assert not {meta["vectors"], meta["shift"]} & stored


def test_an_index_built_without_a_guide_becomes_guided_once_one_exists(world) -> None:
    """An ivf_rabitq_refine built when the other modality had too few rows (or before this kind existed) is
    not where the next build starts: that one did not fall back, so the chain starts at its head again."""
    plain = build_index(world["data"], CFG, world["tune"], "test", guide=world["guide"][:499])
    assert plain[1].kind == IVF_RABITQ_REFINE and "fell_back_from" not in plain[1].extra
    _, params = build_index(world["data"], CFG, world["tune"], "test", trained=plain, guide=world["guide"])
    assert params.kind == IVF_RABITQ_GUIDED
