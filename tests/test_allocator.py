"""avsearch/allocator.py: `avsearch serve` caps glibc's malloc arenas before any thread allocates (RSS grew
for minutes under load while worker threads filled one arena each: benchmarks/serve_soak.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import avsearch.allocator
import avsearch.serve.run
from avsearch.cli.app import app

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Twelve threads alive at once, each allocating; then how many arenas malloc_info lists.
_ARENAS = r"""
import ctypes, os, re, sys, tempfile, threading
if sys.argv[1] == "limit":
    from avsearch.allocator import limit_malloc_arenas
    assert limit_malloc_arenas(2)
barrier, held = threading.Barrier(12), []
def work():
    held.append(bytearray(64 * 1024))  # malloc in this thread: glibc hands it an arena
    barrier.wait()  # all alive at once: none takes over the arena of a thread already gone
threads = [threading.Thread(target=work) for _ in range(12)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
path = os.path.join(tempfile.mkdtemp(), "info.xml")
f = libc.fopen(path.encode(), b"w"); libc.malloc_info(0, f); libc.fclose(f)
print(len(re.findall(r"<heap nr=", open(path).read())))
"""


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}
    done = subprocess.run([sys.executable, "-c", _ARENAS, mode], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc arenas")
def test_threads_share_two_arenas_once_capped() -> None:
    assert _arenas("free") > 2  # glibc's default: up to 8 per core, one per thread here
    assert _arenas("limit") <= 2


def test_a_users_choice_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert avsearch.allocator.limit_malloc_arenas() is False


def test_serve_caps_the_arenas_first(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    calls = []
    monkeypatch.setattr(avsearch.allocator, "limit_malloc_arenas", lambda: calls.append("capped"))
    monkeypatch.setattr(avsearch.serve.run, "set_search_threads", lambda threads: None)  # this process's own
    result = CliRunner().invoke(app, ["serve", "--index-dir", str(tmp_path / "none")])
    assert result.exit_code != 0  # no index there: it stops before serving
    assert calls == ["capped"]
