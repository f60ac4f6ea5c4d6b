"""Test-only launcher: the real server (uvicorn through avsearch.serve.run, as `avsearch serve` runs it)
over an index made with the FAKE encoder (tests/search/fake_encoder.py: real decoders, not a model).

    python -m tests.serve.hostile_server INDEX PORT LIMITS_JSON UPLOAD_BYTES

One route is added for the tests only: /test-only/bug raises, as a bug in avsearch would.
"""

from __future__ import annotations

import json
import logging
import sys

from avsearch.serve.app import create_app
from avsearch.serve.config import ConnectionLimits
from avsearch.serve.run import run_server
from tests.search.fake_encoder import FakeLoader


def main() -> None:
    index, port, limits, upload = sys.argv[1:5]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(index, encoder_loader=FakeLoader(), max_upload_bytes=int(upload), reload_interval=0)

    @app.get("/test-only/bug")
    def bug() -> None:
        raise RuntimeError("a deliberate bug")

    print("ready", flush=True)
    run_server(app, "127.0.0.1", int(port), ConnectionLimits(**json.loads(limits)))


if __name__ == "__main__":
    main()
