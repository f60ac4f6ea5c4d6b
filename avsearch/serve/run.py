"""Run an app of serve/app.py under uvicorn with avsearch's connection limits (the CLI's and the tests' way)."""

from __future__ import annotations

import os
import sys

import uvicorn
from fastapi import FastAPI

from avsearch.serve.config import ConnectionLimits
from avsearch.serve.protocol import guarded_protocol


def set_search_threads(threads: int) -> None:
    """Threads of each search's FAISS and torch work: with several searches in parallel, one each (on 2
    cores, 2 searches x 2 threads would oversubscribe them)."""
    import faiss

    faiss.omp_set_num_threads(threads)
    if "torch" in sys.modules:  # a query path without torch (ONNX) has nothing to set
        sys.modules["torch"].set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for torch or onnxruntime imported after this


def run_server(app: FastAPI, host: str, port: int, limits: ConnectionLimits) -> None:
    """Serve `app` until interrupted: HTTP/1.1 with the deadlines and connection cap of serve/protocol.py."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=guarded_protocol(limits),
        timeout_keep_alive=limits.keep_alive,
    )
