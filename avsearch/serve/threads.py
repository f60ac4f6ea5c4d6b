"""How many threads one search computes with, in every thread that runs searches.

torch keeps its thread count process-wide, and ONNX Runtime sessions read OMP_NUM_THREADS when made; but
FAISS's OpenMP keeps the count per thread: omp_set_num_threads in the main thread leaves the server's
worker threads at one thread per core, so each FAISS search there starts a team whose idle thread then
spins on the other core (a text query's IVF search: about 6 ms of CPU instead of 1, measured in
benchmarks/serve.py's server). So the count is set again, once, in each thread that searches.
"""

from __future__ import annotations

import os
import sys
import threading

_threads: int | None = None  # set by set_search_threads; None: leave each library's own default
_local = threading.local()  # .threads: the count this thread's FAISS was set to


def set_search_threads(threads: int) -> None:
    """Threads of each search's FAISS, torch and ONNX Runtime work: with several searches in parallel, one
    each (on 2 cores, 2 searches x 2 threads would oversubscribe them). Threads that search later take it
    through `in_this_thread`."""
    global _threads
    import faiss

    _threads = threads
    faiss.omp_set_num_threads(threads)
    _local.threads = threads
    if "torch" in sys.modules:  # a query path without torch (ONNX) has nothing to set
        sys.modules["torch"].set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for torch or onnxruntime imported after this


def in_this_thread() -> None:
    """Give this thread's FAISS the count set_search_threads chose (once per thread; nothing before it)."""
    if _threads is None or getattr(_local, "threads", None) == _threads:
        return
    import faiss

    faiss.omp_set_num_threads(_threads)
    _local.threads = _threads
