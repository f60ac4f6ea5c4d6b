"""An HNSW coarse quantizer files every vector in the list of its nearest centroid (issue 26: recall@10 0.07
at 1M vectors and 16,000 lists, because FAISS's IVF add went through the graph at efSearch 16 and filed
most vectors in lists of other concepts; store/ann_coarse.py).

Random unit vectors in 128-d over 1,200 lists (the graph at efSearch 16 misfiles about 1% of them, the
worst by a score of 0.35, measured): every list is checked, vector by vector, against a flat search over the same
centroids, after a new build, an update that reuses the trained lists, a streamed build and an update
in place of it (store/ann_update.py)."""

from __future__ import annotations

from dataclasses import replace

import faiss
import numpy as np
import pytest

from avsearch.store.ann import AnnParams
from avsearch.store.ann_build import build_index
from avsearch.store.ann_search import configure, search_parameters
from avsearch.store.ann_stream import ArrayChunks, build_streamed
from avsearch.store.ann_update import update_in_place
from avsearch.store.config import AnnConfig

N, DIM, LISTS = 6_000, 128, 1_200
CFG = AnnConfig(
    exact_max_vectors=1000,
    lists_per_sqrt_n=LISTS / N**0.5,
    min_points_per_list=5,
    hnsw_coarse_min_lists=LISTS,
    max_tuning_queries=40,
    k_factors=(16,),
    target_recall=0.5,  # the lists, not the tuning, are under test: one kind, tuned quickly
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def world() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return _unit(rng.standard_normal((N, DIM))), _unit(rng.standard_normal((40, DIM)))


def _worst_filing(index: faiss.Index, data: np.ndarray) -> float:
    """The largest shortfall, over the vectors, of their list's centroid score below their best one."""
    ivf = faiss.extract_index_ivf(index)
    centroids = faiss.downcast_index(ivf.quantizer).storage.reconstruct_n(0, ivf.nlist)
    listed = np.full(len(data), -1)
    for lst in range(ivf.nlist):
        size = ivf.invlists.list_size(lst)
        if size:
            listed[faiss.rev_swig_ptr(ivf.invlists.get_ids(lst), size)] = lst
    assert (listed >= 0).all()
    scores = data @ centroids.T
    return float((scores.max(axis=1) - scores[np.arange(len(data)), listed]).max())


def test_new_and_updated_hnsw_coarse_lists_hold_each_vector_at_its_nearest_centroid(world) -> None:
    data, queries = world
    index, params = build_index(data, CFG, queries, "test")
    assert params.coarse == "hnsw" and params.nlist == LISTS
    assert _worst_filing(index, data) < 1e-5
    # an update reuses the lists; however narrow the graph's search (tuned: max(64, nprobe)), it files exactly
    faiss.downcast_index(faiss.extract_index_ivf(index).quantizer).hnsw.efSearch = 1
    index, params = build_index(data, CFG, queries, "test", trained=(index, params))
    assert params.coarse == "hnsw"
    assert _worst_filing(index, data) < 1e-5


class PathChunks:
    """ann_update's source: the rows with a path each ("0", "1", ...), in chunks."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def path_chunks(self):  # noqa: ANN201
        for s in range(0, len(self.array), 1500):
            yield [str(i) for i in range(s, min(s + 1500, len(self.array)))], self.array[s : s + 1500]


def test_streamed_and_updated_lists_hold_each_vector_at_its_nearest_centroid(world, tmp_path) -> None:
    data, queries = world
    old = data[: N - 500]
    cfg = replace(CFG, hnsw_coarse_min_lists=1)  # fewer rows, fewer lists: still behind a graph
    index, params = build_streamed(ArrayChunks(old, 1500), cfg, tmp_path / "v.f32", queries, "test")
    assert params.coarse == "hnsw" and params.vectors_on_disk
    assert _worst_filing(index.base, old) < 1e-5
    # 500 rows more, added in place (ids N-500...N-1 in order); however narrow the graph's search, exactly
    faiss.downcast_index(faiss.extract_index_ivf(index.base).quantizer).hnsw.efSearch = 1
    updated = update_in_place(index, params, [str(i) for i in range(len(old))], PathChunks(data))
    assert updated is not None and updated[1].n == N
    assert _worst_filing(index.base, data) < 1e-5


def test_the_graph_searches_wider_at_each_doubling_of_nprobe_the_tuning_tries() -> None:
    # ann_tune._smallest_nprobe doubles nprobe and calls a gain under 0.002 from 64 lists on a plateau of the
    # codes: a graph search width pinned across a doubling (max(64, nprobe) was 64 at nprobe 32 and 64) gave
    # the same lists, so a RaBitQ build passed for IVF-Flat (200k vectors, 3,200 lists)
    index = faiss.index_factory(8, "IVF4_HNSW32,RaBitQ,RFlat", faiss.METRIC_INNER_PRODUCT)
    index.train(_unit(np.random.default_rng(0).standard_normal((200, 8))))
    quantizer = faiss.downcast_index(faiss.extract_index_ivf(index).quantizer)
    widths = []
    for nprobe in (32, 64, 128, 256, 512, 1024):
        params = AnnParams(kind="ivf_rabitq_refine", n=200, dim=8, nlist=4096, nprobe=nprobe, k_factor=4, coarse="hnsw")
        coarse = search_parameters(params).referenced[0].referenced_coarse  # the HNSW params a search passes
        configure(index, params)  # a loaded index's plain searches use the same width
        assert quantizer.hnsw.efSearch == coarse.efSearch >= nprobe
        widths.append(quantizer.hnsw.efSearch)
    assert all(b > a for a, b in zip(widths, widths[1:], strict=False))
