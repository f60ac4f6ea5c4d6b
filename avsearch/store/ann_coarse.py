"""An IVF index's HNSW coarse quantizer: vectors are filed in their lists exactly, never through the graph.

FAISS's IndexIVF.add files each vector in the list its coarse quantizer returns; an HNSW quantizer answers
through its graph at its own efSearch (16 unless set; ours is set only after tuning). Over k-means centroids
of many equally distant concepts (benchmarks/search.py's cases) that graph finds the nearest centroid for
fewer vectors the more concepts there are: 0.98 of them at 500 concepts (800 lists), 0.76 at 1,000, 0.26-0.47
at 2,000 (3,200 lists), 0.13 at 4,000 (6,400 lists); the rest went to lists of other concepts, where no nprobe
that ranks the lists right finds them (recall@10 0.77 at nprobe 1,024 of 3,200; 0.07 at 1M vectors and 16,000
lists). benchmarks/hnsw_coarse.py filing measures it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from avsearch.lazy_import import lazy_module

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)


@contextmanager
def exact_lists(index: faiss.Index) -> Iterator[None]:
    """While open, adds to `index` (an IVF index or one wrapping it) file each vector in the list of its
    nearest centroid, found by a flat search over the centroids instead of the HNSW coarse quantizer's
    graph (a flat quantizer already does so: nothing changes). The graph serves searches only."""
    ivf = faiss.extract_index_ivf(index)
    graph = faiss.downcast_index(ivf.quantizer)
    if not isinstance(graph, faiss.IndexHNSW):
        yield
        return
    flat = faiss.IndexFlat(graph.d, graph.metric_type)
    flat.add(graph.storage.reconstruct_n(0, graph.ntotal))
    ivf.quantizer = flat  # not owned by the index: `flat` lives until the graph is back
    try:
        yield
    finally:
        ivf.quantizer = graph
