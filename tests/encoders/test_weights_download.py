"""The real download code (weights.download -> encoders.fetch) against a real HTTP server on 127.0.0.1.

The server (http.server in a thread) records every request; its routes serve a file whole, honour or ignore
Range/If-Range, stop half-way through a body (the server closes the connection), or answer an error.
"""

from __future__ import annotations

import hashlib
import random
import re
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from avsearch.encoders import weights
from avsearch.encoders.fetch import DownloadSettings, load_download_settings
from avsearch.encoders.weights import WeightFile
from avsearch.errors import ChecksumMismatchError, ConfigError, DownloadError, WeightsMissingError

SIZE = 300 * 1024  # 300 KiB: several reads of the 64 KiB chunks below
FAST = DownloadSettings(retries=3, backoff=0.0, timeout=5.0, chunk_size=64 * 1024)


def _bytes(seed: int, size: int = SIZE) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass
class Route:
    data: bytes
    etag: str | None = '"v1"'
    ranges: bool = True  # honour Range (and If-Range); False: always the whole file, 200
    cuts: int = 0  # the next `cuts` answers stop half-way through their body
    reset: bool = False  # stop with a TCP reset (ConnectionResetError) instead of a plain close
    status: int | None = None  # answer this error instead


class Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    requests: list[tuple[str, dict[str, str]]]

    def server_bind(self) -> None:  # HTTPServer's own looks the host name up (getfqdn): not needed here
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *_args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, dict(self.headers)))
        route = self.server.routes.get(self.path)
        if route is None or route.status:
            self.send_error(route.status if route else 404)
            return
        start, status = 0, 200
        asked = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if route.ranges and asked and self.headers.get("If-Range", route.etag) == route.etag:
            start, status = int(asked[1]), 206
            if start >= len(route.data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(route.data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = route.data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if route.etag:
            self.send_header("ETag", route.etag)
        if route.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(route.data) - 1}/{len(route.data)}")
        self.end_headers()
        if route.cuts:
            route.cuts -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if route.reset:  # linger 0: close() sends RST, the client's read fails
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True  # the connection closes with the body half sent
            return
        self.wfile.write(body)


@pytest.fixture(scope="module")
def _server() -> Iterator[Server]:
    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def server(_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Server:
    """The server with no routes and no requests; avsearch's cache in tmp; no network but 127.0.0.1."""
    _server.routes, _server.requests = {}, []
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "cache"))
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def loopback_connect(sock, address):
        if address[0] != "127.0.0.1":
            raise OSError(f"network disabled in tests ({address})")
        return connect(sock, address)

    def loopback_getaddrinfo(host, *args, **kwargs):
        if host != "127.0.0.1":
            raise OSError(f"network disabled in tests ({host})")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", loopback_connect)
    monkeypatch.setattr(socket, "getaddrinfo", loopback_getaddrinfo)
    return _server


def _file(server: Server, path: str, route: Route, sha256: str | None = None) -> WeightFile:
    server.routes[path] = route
    url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    return WeightFile(key="t", name=f"sub/{path.strip('/')}.pt", description="test file", url=url, sha256=sha256)


def _cache(tmp_path: Path) -> list[str]:
    """Every file left in avsearch's cache, relative names."""
    root = tmp_path / "cache"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_complete_file_is_verified_and_put_in_the_cache(server: Server, tmp_path: Path) -> None:
    data = _bytes(1)
    wf = _file(server, "/whole", Route(data), sha256=hashlib.sha256(data).hexdigest())
    path = weights.download(wf, settings=FAST)
    assert path == tmp_path / "cache" / "sub" / "whole.pt" and path.read_bytes() == data
    assert _cache(tmp_path) == ["sub/whole.pt"]  # no .part or record left beside it
    assert [(p, "Range" in h) for p, h in server.requests] == [("/whole", False)]


def test_sha256_mismatch_deletes_the_file_and_names_both_digests(server: Server, tmp_path: Path) -> None:
    data, published = _bytes(2), hashlib.sha256(b"the published file").hexdigest()
    wf = _file(server, "/tampered", Route(data), sha256=published)
    with pytest.raises(ChecksumMismatchError) as info:
        weights.download(wf, settings=FAST)
    actual = hashlib.sha256(data).hexdigest()
    assert (info.value.name, info.value.expected, info.value.actual) == ("tampered.pt", published, actual)
    assert str(info.value).startswith("tampered.pt: SHA-256 mismatch") and published in str(info.value)
    assert actual in str(info.value)
    assert _cache(tmp_path) == []


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_cut_half_way_resumes_with_a_range_request(server: Server, tmp_path: Path, reset: bool) -> None:
    data = _bytes(3)
    wf = _file(server, "/flaky", Route(data, cuts=1, reset=reset), sha256=hashlib.sha256(data).hexdigest())
    assert weights.download(wf, settings=FAST).read_bytes() == data
    (_, first), (_, second) = server.requests
    assert "Range" not in first
    if reset:  # a reset drops what the client had not read yet: it resumes from what it holds, at most half
        held = int(re.fullmatch(r"bytes=(\d+)-", second.get("Range", "bytes=0-"))[1])
        assert held <= SIZE // 2 and (held == 0 or second["If-Range"] == '"v1"')
    else:
        assert second["Range"] == f"bytes={SIZE // 2}-" and second["If-Range"] == '"v1"'
    assert _cache(tmp_path) == ["sub/flaky.pt"]


def test_a_server_that_ignores_range_is_read_from_the_start_again(server: Server, tmp_path: Path) -> None:
    data = _bytes(4)
    wf = _file(server, "/norange", Route(data, ranges=False, cuts=1))  # no digest: only the length can tell
    assert weights.download(wf, settings=FAST).read_bytes() == data  # not the first half twice
    assert [h.get("Range") for _, h in server.requests] == [None, f"bytes={SIZE // 2}-"]
    assert _cache(tmp_path) == ["sub/norange.pt"]


def test_out_of_retries_keeps_the_part_and_the_next_run_resumes_it(server: Server, tmp_path: Path) -> None:
    data = _bytes(5)
    wf = _file(server, "/cut", Route(data, cuts=2))
    once = DownloadSettings(retries=1, backoff=0.0, timeout=5.0, chunk_size=64 * 1024)
    with pytest.raises(DownloadError, match=r"cut\.pt: download from .* failed 2 times.* stay in .*cut\.pt\.part"):
        weights.download(wf, settings=once)
    assert _cache(tmp_path) == ["sub/cut.pt.part", "sub/cut.pt.part.json"]  # never under the file's own name
    kept = SIZE // 2 + SIZE // 4  # half the file, then half the rest
    assert (tmp_path / "cache" / "sub" / "cut.pt.part").read_bytes() == data[:kept]
    assert weights.download(wf, settings=once).read_bytes() == data
    assert [h.get("Range") for _, h in server.requests] == [None, f"bytes={SIZE // 2}-", f"bytes={kept}-"]
    assert _cache(tmp_path) == ["sub/cut.pt"]


def test_a_file_changed_since_the_part_is_downloaded_again(server: Server, tmp_path: Path) -> None:
    old, new = _bytes(6), _bytes(7)
    wf = _file(server, "/changed", Route(old, cuts=1))
    with pytest.raises(DownloadError):
        weights.download(wf, settings=DownloadSettings(retries=0, backoff=0.0))
    server.routes["/changed"] = Route(new, etag='"v2"')
    assert weights.download(wf, settings=FAST).read_bytes() == new
    last = server.requests[-1][1]
    assert last["Range"] == f"bytes={SIZE // 2}-" and last["If-Range"] == '"v1"'  # answered 200 with v2


def test_range_not_satisfiable(server: Server, tmp_path: Path) -> None:
    # A run that stopped between the last byte and the rename: 416 for the rest, the .part is the file.
    data = _bytes(8)
    wf = _file(server, "/done", Route(data, cuts=1))
    with pytest.raises(DownloadError):
        weights.download(wf, settings=DownloadSettings(retries=0, backoff=0.0))
    (tmp_path / "cache" / "sub" / "done.pt.part").write_bytes(data)
    assert weights.download(wf, settings=FAST).read_bytes() == data
    assert [h.get("Range") for _, h in server.requests] == [None, f"bytes={SIZE}-"]
    # A file that shrank below the part's length: 416, then the whole new file.
    server.requests.clear()
    shorter = _bytes(9, SIZE // 4)
    wf = _file(server, "/shrunk", Route(data, cuts=1))
    with pytest.raises(DownloadError):
        weights.download(wf, settings=DownloadSettings(retries=0, backoff=0.0))
    server.routes["/shrunk"] = Route(shorter)
    assert weights.download(wf, settings=FAST).read_bytes() == shorter
    assert [h.get("Range") for _, h in server.requests] == [None, f"bytes={SIZE // 2}-", None]


def test_failures_for_good_leave_no_partial_file(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file removed from the server after a run that left a resumable part: the part goes too.
    gone = _file(server, "/gone", Route(_bytes(12), cuts=1))
    with pytest.raises(DownloadError, match="stay in"):
        weights.download(gone, settings=DownloadSettings(retries=0, backoff=0.0))
    server.routes["/gone"] = Route(b"", status=404)
    with pytest.raises(DownloadError, match=r"gone\.pt: HTTP 404"):
        weights.download(gone, settings=FAST)
    assert _cache(tmp_path) == []
    # Cut more often than the retries allow by a server that cannot resume: nothing worth keeping.
    stuck = _file(server, "/stuck", Route(_bytes(10), ranges=False, cuts=9))
    with pytest.raises(DownloadError, match=r"stuck\.pt: download from .* failed 4 times, last: connection closed"):
        weights.download(stuck, settings=FAST)
    assert _cache(tmp_path) == []
    # Through resolve_weight (the bundled settings): one error naming the file, the reason and the source.
    monkeypatch.setattr(weights, "find_file", lambda name: gone)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the suite runs off-line (tests/conftest.py)
    monkeypatch.delenv("AVSEARCH_OFFLINE", raising=False)
    with pytest.raises(WeightsMissingError, match=r"gone\.pt not found \(download failed: gone\.pt: HTTP 404.*get it"):
        weights.resolve_weight("gone.pt")
    assert _cache(tmp_path) == []


def test_progress_shows_size_and_speed_when_forced_on(server: Server, capsys: pytest.CaptureFixture) -> None:
    data = _bytes(11)
    wf = _file(server, "/shown", Route(data))
    weights.download(wf, settings=FAST, progress=True)
    err = capsys.readouterr().err
    assert "shown.pt" in err and "300k/300k" in err and "B/s" in err
    (Path(weights.load_settings().cache_dir) / wf.name).unlink()
    weights.download(wf, settings=FAST)  # the default: a bar only when stderr is a terminal (here a pipe)
    assert capsys.readouterr().err == ""


def test_download_settings_come_from_the_config(tmp_path: Path) -> None:
    assert load_download_settings() == DownloadSettings()  # the bundled file states the defaults
    bad = tmp_path / "download.toml"
    bad.write_text("[download]\nretry = 3\n")
    with pytest.raises(ConfigError, match="unknown key.*retry.*valid: .*retries"):
        load_download_settings(bad)
