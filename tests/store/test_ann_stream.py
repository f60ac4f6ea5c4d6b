"""Streamed builds with the full vectors on disk (issue 26, goal 2): the same index as an in-memory build,
built from chunks only, saved and loaded with its vectors file, exact where the IVF index is."""

from __future__ import annotations

from dataclasses import replace

import faiss
import numpy as np
import pytest

from avsearch.store.ann import IVF_RABITQ_REFINE, exact_topk, recall_at_k
from avsearch.store.ann_build import build_index
from avsearch.store.ann_disk import DiskRefine
from avsearch.store.ann_files import load_ann, new_vectors_file, save_ann
from avsearch.store.ann_search import search_parameters
from avsearch.store.ann_stream import ArrayChunks, build_streamed
from avsearch.store.config import AnnConfig
from tests.store.synthetic import gap_data

# max_train_points below n: k-means trains on a sample, which the streamed build must gather as build_index does
CFG = AnnConfig(
    exact_max_vectors=1000, memory_budget_gb=1.0, max_tuning_queries=400, refined_codes="rabitq", max_train_points=6000
)
CHUNK = 300


class CountingChunks(ArrayChunks):
    """ArrayChunks that records every chunk it hands out."""

    def __init__(self, array: np.ndarray, rows: int) -> None:
        super().__init__(array, rows)
        self.sizes: list[int] = []

    def chunks(self):  # noqa: ANN201
        for chunk in super().chunks():
            self.sizes.append(len(chunk))
            yield chunk


@pytest.fixture(scope="module")
def world() -> tuple[np.ndarray, np.ndarray]:
    return gap_data(12_000, 500, seed=1)


@pytest.fixture(scope="module")
def both(world, tmp_path_factory):  # noqa: ANN001, ANN201
    data, queries = world
    source = CountingChunks(data, CHUNK)
    path = tmp_path_factory.mktemp("stream") / "v.f32"
    streamed = build_streamed(source, CFG, path, queries[:300], "test")
    return build_index(data, CFG, queries[:300], "test"), streamed, source


def _codes(ivf: faiss.IndexIVF, lst: int) -> np.ndarray:
    size = ivf.invlists.list_size(lst)
    return faiss.rev_swig_ptr(ivf.invlists.get_codes(lst), size * ivf.code_size).copy()


def test_streamed_build_equals_the_in_memory_build_and_reads_chunks_only(world, both) -> None:
    data, queries = world
    (memory, mparams), (disk, dparams), source = both
    assert isinstance(disk, DiskRefine) and dparams.vectors_on_disk and dparams.kind == mparams.kind
    assert (dparams.nlist, dparams.n) == (mparams.nlist, len(data))
    # never more than a chunk at a time; 2 passes (training sample + exact truth, then codes + vectors file)
    # passes: sample + cross-modal truth, codes + vectors, the same-modality queries' truth (rows of the sample)
    assert max(source.sizes) == CHUNK and sum(source.sizes) == 3 * len(data)
    np.testing.assert_array_equal(np.fromfile(disk.vectors.path, np.float32).reshape(data.shape), data)
    ivf = faiss.extract_index_ivf(memory)
    ids = faiss.extract_index_ivf(memory).invlists
    assert all(np.array_equal(_codes(ivf, i), _codes(disk.base, i)) for i in range(ivf.nlist))
    assert all(ids.list_size(i) == disk.base.invlists.list_size(i) for i in range(ivf.nlist))
    fresh = queries[300:]
    for nprobe, k_factor in ((2, 4), (dparams.nprobe, dparams.k_factor), (ivf.nlist, 64)):
        sm, im = memory.search(fresh, 10, params=search_parameters(mparams, nprobe=nprobe, k_factor=k_factor))
        sd, i_d = disk.search(fresh, 10, params=search_parameters(dparams, nprobe=nprobe, k_factor=k_factor))
        assert (im == i_d).all()
        np.testing.assert_allclose(sd, sm, atol=1e-5)
    # scores are exact inner products, and every list with deep re-ranking is exact search
    np.testing.assert_allclose(sd, np.einsum("qd,qkd->qk", fresh, data[i_d]), atol=1e-5)
    assert (i_d == exact_topk(data, fresh, 10)).all()
    assert dparams.heldout_recall >= CFG.target_recall
    assert recall_at_k(disk.search(fresh, 10)[1], exact_topk(data, fresh, 10)) >= CFG.target_recall - 0.02


def test_disk_index_saves_loads_and_filters_exactly(world, both, tmp_path) -> None:
    data, queries = world
    _, (_, dparams), _ = both
    path = new_vectors_file(tmp_path, "image.native")
    disk, params = build_streamed(ArrayChunks(data, 4096), replace(CFG, k_factors=(8,)), path, queries[:300])
    paths = [f"f{i}" for i in range(len(data))]
    meta = save_ann(tmp_path, "image.native", disk, params, paths, 3)
    assert meta["vectors"] == path.name and path.is_file()
    loaded = load_ann(tmp_path, "image.native")
    assert loaded is not None and isinstance(loaded.index, DiskRefine) and loaded.index.k_factor == params.k_factor
    assert loaded.index.vectors.path == path and loaded.index.base.nprobe == params.nprobe
    allowed = np.arange(5, len(data), 7)
    truth = allowed[exact_topk(data[allowed], queries[300:320], 10)]
    sel = faiss.IDSelectorBatch(allowed.astype(np.int64))
    every = search_parameters(loaded.params, sel=sel, nprobe=loaded.params.nlist, k_factor=64)
    assert (loaded.index.search(queries[300:320], 10, params=every)[1] == truth).all()
    _, ids = loaded.search(queries[300:320], 10, allowed=allowed)
    assert np.isin(ids[ids >= 0], allowed).all()  # (fewer than k where the probed lists hold fewer passing rows)
    # a later build of the same name replaces the file; the old one goes with its build
    again = new_vectors_file(tmp_path, "image.native")
    disk2, params2 = build_streamed(
        ArrayChunks(data[:9000], 4096), CFG, again, queries[:300], trained=(loaded.index, loaded.params)
    )
    assert params2.nlist == params.nlist and "fell_back_from" not in params2.extra  # lists reused, not retrained
    save_ann(tmp_path, "image.native", disk2, params2, paths[:9000], 4)
    assert again.is_file() and not path.exists()
    assert load_ann(tmp_path, "image.native").index.ntotal == 9000
    assert IVF_RABITQ_REFINE == params2.kind
