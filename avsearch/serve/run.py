"""Run an app of serve/app.py under uvicorn with avsearch's connection limits (the CLI's and the tests' way)."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from avsearch.serve.config import ConnectionLimits
from avsearch.serve.protocol import guarded_protocol
from avsearch.serve.threads import set_search_threads  # noqa: F401  (the CLI's and benchmarks' name for it)


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
