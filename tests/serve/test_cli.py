"""`avsearch serve` as a user starts it: a real process on a free loopback port answering over HTTP, and
one error line for a folder without an index. The index is made with the test-only FAKE encoder
(tests/search/fake_encoder.py); /api/info loads no model, so the real loader is never asked for one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from avsearch import __version__
from avsearch.cli.serve import is_loopback
from tests.serve.conftest import Library

AVSEARCH = [str(Path(sys.executable).with_name("avsearch"))]  # the installed console script


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_over_http(library: Library) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [*AVSEARCH, "serve", "--index-dir", str(library.index), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "AVSEARCH_WEIGHTS": "/nonexistent"},
    )
    try:
        deadline, body = time.monotonic() + 60, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=2).json()
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert body is not None, proc.stderr.read().decode() if proc.poll() is not None else "no answer in 60 s"
        assert body["version"] == __version__ and len(body["modalities"]) == 3
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/" in err.decode()
    assert "warning" not in err.decode()  # loopback: nothing exposed


def test_no_index_is_one_line_and_exit_1(tmp_path: Path) -> None:
    r = subprocess.run([*AVSEARCH, "serve", "--index-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"avsearch: error: {tmp_path}: no index here; build one with `avsearch index FOLDER`"
    ]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.org", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
