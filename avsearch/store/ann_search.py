"""A built FAISS index's search settings: nprobe, k_factor and row selectors, per search or set on the index."""

from __future__ import annotations

from avsearch.lazy_import import lazy_module
from avsearch.store.ann import FLAT, IVF_RABITQ_GUIDED, RERANKED, AnnParams
from avsearch.store.ann_disk import DiskRefine

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)

# The HNSW coarse quantizer's search width: EF_PER_PROBE x nprobe, at least HNSW_EF_SEARCH. Over centroids of
# many equally distant concepts the graph's beam, more than nprobe, decides which lists come back (200k vectors,
# 3,200 lists: recall@10 0.897 at efSearch 64 for nprobe 4 to 64; at nprobe 16, 0.975 at efSearch 256), and a
# width pinned while nprobe doubled (max(64, nprobe): 64 at nprobe 32 and 64) looked like a plateau of the codes
# to the tuning (ann_tune._smallest_nprobe), which fell back to IVF-Flat (nprobe 181; now RaBitQ at nprobe 53).
HNSW_EF_SEARCH = 64
EF_PER_PROBE = 4


def coarse_ef(nprobe: int) -> int:
    """The HNSW coarse quantizer's efSearch for a search of nprobe lists."""
    return max(HNSW_EF_SEARCH, EF_PER_PROBE * nprobe)


def search_parameters(
    params: AnnParams, sel: faiss.IDSelector | None = None, nprobe: int | None = None, k_factor: int | None = None
) -> faiss.SearchParameters | None:
    """Per-search settings for an index built as `params`: a row selector (metadata filters), nprobe and
    k_factor overrides. None when there is nothing to set (the index's own settings apply)."""
    if params.kind == FLAT:
        return None if sel is None else faiss.SearchParameters(sel=sel)
    ivf = faiss.SearchParametersIVF(nprobe=nprobe or params.nprobe)
    if sel is not None:
        ivf.sel = sel
    if params.coarse == "hnsw":
        ivf.quantizer_params = coarse = faiss.SearchParametersHNSW(efSearch=coarse_ef(ivf.nprobe))
        ivf.referenced_coarse = coarse
    if params.kind not in RERANKED:
        ivf.referenced = sel  # the SWIG proxies must outlive the search
        return ivf
    refine = faiss.IndexRefineSearchParameters(k_factor=float(k_factor or params.k_factor), base_index_params=ivf)
    refine.referenced = (ivf, sel)
    return refine


def every_list_parameters(params: AnnParams, sel: faiss.IDSelector) -> faiss.SearchParameters | None:
    """A selector's search over every list (its probed lists held too few passing rows). A guided index
    may hold a row 1 + cap times: its candidates go that much deeper, so k distinct rows come back."""
    copies = 1
    if params.kind == IVF_RABITQ_GUIDED:
        copies += int(params.extra.get("spills", {}).get("cap", 0))  # type: ignore[union-attr]
    k_factor = max(1, params.k_factor) * copies if params.k_factor else None
    return search_parameters(params, sel=sel, nprobe=max(1, params.nlist), k_factor=k_factor)


def configure(index: faiss.Index, params: AnnParams) -> None:
    """Set the tuned nprobe (and k_factor) on a built or loaded index, so plain searches use them."""
    if params.kind == FLAT:
        return
    refine = None
    if isinstance(index, DiskRefine):  # codes in RAM, re-ranked from full vectors it holds (spills too)
        index.k_factor = float(params.k_factor or 1)
        index, refine = index.base, index
    set_nprobe(index, params.nprobe)
    if params.coarse == "hnsw":  # CPU only: refined kinds are never moved to a GPU
        quantizer = faiss.downcast_index(faiss.extract_index_ivf(index).quantizer)
        quantizer.hnsw.efSearch = coarse_ef(params.nprobe)
    if params.k_factor and refine is None:  # an IndexRefineFlat
        faiss.downcast_index(index).k_factor = float(params.k_factor)


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    """Set nprobe on a CPU or GPU IVF index (no-op for flat ones)."""
    try:
        faiss.extract_index_ivf(index).nprobe = nprobe
    except RuntimeError:
        if hasattr(index, "nprobe"):  # GPU IVF indexes are not extractable
            index.nprobe = nprobe
