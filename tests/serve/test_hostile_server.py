"""Hostile requests against the real server: uvicorn on 127.0.0.1 in its own process, run the way
`avsearch serve` runs it (avsearch.serve.run), over an index made with the test-only FAKE encoder.

Pass means: no 5xx to bad input, no traceback in a response, no byte of a file outside the indexed folder,
slow clients cut off, the server's memory bounded (a guard thread kills it past RSS_LIMIT) and the server
alive after every case. Requests go to 127.0.0.1 only, each bounded in time.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.fixture_guard import unchanged
from tests.media.jpegs import tiny_jpeg
from tests.serve.conftest import UPLOAD_LIMIT, Library, make_library

REPO = Path(__file__).resolve().parents[2]
LIMITS = {"max_connections": 12, "head_timeout": 1.0, "body_timeout": 2.0, "keep_alive": 1}
RSS_LIMIT = 3 * 2**30  # bytes: the server is killed (and the test fails) past this
SECRET = b"root:x:0:0:secret outside the collection\n"


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    port: int
    log: Path
    library: Library
    outside: Path
    peak_rss: int = 0
    killed_for_memory: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    def rss(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as fh:
            line = next(x for x in fh if x.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def guard(self) -> None:
        """Poll the server's RSS; kill it past RSS_LIMIT (a memory bomb must not take the machine down)."""
        while not self._stop.wait(0.05) and self.process.poll() is None:
            try:
                rss = self.rss()
            except (OSError, StopIteration):
                return
            self.peak_rss = max(self.peak_rss, rss)
            if rss > RSS_LIMIT:
                self.killed_for_memory = True
                self.process.kill()
                return

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=20, **kwargs)  # type: ignore[arg-type]

    def id(self, path: Path) -> str:
        return self.library.id(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, bridges: list[Path]) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("hostile")
    library = make_library(base / "media", base / "index", bridges)
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    port = _free_port()
    log = base / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.serve.hostile_server", str(library.index), str(port), json.dumps(LIMITS)]
            + [str(UPLOAD_LIMIT)],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    srv = Server(process, f"http://127.0.0.1:{port}", port, log, library, outside)
    threading.Thread(target=srv.guard, daemon=True).start()
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, f"the server did not start:\n{srv.log_text()}"
        try:
            if httpx.get(srv.url + "/api/info", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"the server did not answer in 120 s:\n{srv.log_text()}"
        time.sleep(0.2)
    with unchanged(library.root, "the hostile server's media (a case changes a file through `changing`)"):
        yield srv
    srv._stop.set()
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(autouse=True)
def alive_and_bounded(server: Server) -> Iterator[None]:
    """After every case: the server answers, and its memory stayed under the guard."""
    yield
    assert not server.killed_for_memory, f"server RSS passed {RSS_LIMIT >> 20} MiB"
    assert server.process.poll() is None, f"the server died:\n{server.log_text()[-3000:]}"
    assert server.get("/api/info").status_code == 200


@pytest.fixture
def changing() -> Iterator[Callable[[Path], Path]]:
    """changing(path): a file of the shared library this case swaps, rewrites or adds; after the case it is
    put back as it was (bytes and times: the row's size and mtime match again) or removed if it was new."""
    saved: list[tuple[Path, bytes | None, os.stat_result | None]] = []

    def keep(path: Path) -> Path:
        there = path.is_file() and not path.is_symlink()
        saved.append((path, path.read_bytes() if there else None, path.stat() if there else None))
        return path

    yield keep
    for path, data, st in reversed(saved):
        if path.is_symlink() or path.exists():
            path.unlink()
        if data is not None and st is not None:
            path.write_bytes(data)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _one_line_error(r: httpx.Response, status: int | tuple[int, ...]) -> str:
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    error = r.json()["error"]
    assert "\n" not in error and "Traceback" not in r.text
    return error


def _swap_for_link(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


# -- files outside the collection -------------------------------------------------------------------------


def test_sound_swapped_for_a_link_to_a_secret_is_not_served(server: Server, changing) -> None:
    sound = changing(server.library.sounds[0])
    item = server.id(sound)
    assert server.get(f"/api/items/{item}/media").status_code == 200
    _swap_for_link(sound, server.outside / "secret.txt")
    r = server.get(f"/api/items/{item}/media")
    assert b"secret" not in r.content
    assert "outside the indexed folders" in _one_line_error(r, 404)
    _swap_for_link(sound, Path("/etc/passwd"))
    r = server.get(f"/api/items/{item}/media", headers={"Range": "bytes=0-100"})
    assert b"root:" not in r.content
    _one_line_error(r, 404)


def test_point_cloud_swapped_for_a_link_to_etc_passwd_is_not_served(server: Server, changing) -> None:
    cloud = changing(server.library.clouds[0])
    item = server.id(cloud)
    _swap_for_link(cloud, Path("/etc/passwd"))
    for route in ("media", "thumbnail"):
        r = server.get(f"/api/items/{item}/{route}")
        assert b"root:" not in r.content
        _one_line_error(r, 404)


def test_picture_swapped_for_a_link_to_an_identical_copy_elsewhere_is_not_served(server: Server, changing) -> None:
    """Same bytes, size and mtime as the indexed file: only the place tells it apart."""
    picture = changing(server.library.images[0])
    item = server.id(picture)
    copy = server.outside / picture.name
    shutil.copy2(picture, copy)
    _swap_for_link(picture, copy)
    for route in ("media", "thumbnail"):
        _one_line_error(server.get(f"/api/items/{item}/{route}"), 404)


def test_picture_swapped_for_another_indexed_picture_is_409(server: Server, changing) -> None:
    picture, other = changing(server.library.images[1]), server.library.images[2]
    item = server.id(picture)
    _swap_for_link(picture, other)  # inside the folder, but not the file this row was made from
    for route in ("media", "thumbnail"):
        r = server.get(f"/api/items/{item}/{route}")
        assert r.content != other.read_bytes()
        assert "changed since it was indexed" in _one_line_error(r, 409)


def test_links_to_a_fifo_are_never_opened(server: Server, changing) -> None:
    sound = changing(server.library.sounds[1])
    item = server.id(sound)
    for fifo in (server.outside / "pipe", changing(sound.parent / "pipe")):
        if not fifo.exists():
            os.mkfifo(fifo)
        _swap_for_link(sound, fifo)
        started = time.monotonic()
        r = server.get(f"/api/items/{item}/media")
        assert time.monotonic() - started < 5  # opening a FIFO for reading would block
        _one_line_error(r, 404)


def test_changed_file_is_409_and_touched_file_is_served(server: Server, changing) -> None:
    sound = changing(server.library.sounds[2])
    item = server.id(sound)
    data = sound.read_bytes()
    os.utime(sound, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: same content
    r = server.get(f"/api/items/{item}/media")
    assert (r.status_code, r.content) == (200, data)
    sound.write_bytes(data[:-4] + b"\x01\x02\x03\x04")  # same size, other content
    _one_line_error(server.get(f"/api/items/{item}/media"), 409)
    sound.write_bytes(data + b"\0")  # other size: refused without reading
    _one_line_error(server.get(f"/api/items/{item}/media"), 409)


# -- bad values: 400 with one line, never 5xx ---------------------------------------------------------------

BAD_GETS = [
    "/api/search?text=a&where=size%20%3E%20" + "9" * 400,
    "/api/search?text=a&where=mtime%20%3C%20%270001-01-01%27",
    "/api/search?text=a&where=size%20%3D%20-9223372036854775809",
    "/api/search?text=a&where=size%20%3E%201e308",
    "/api/search?text=a&where=mtime%20%3E%20%279999-12-31%27",
    "/api/search?text=a&where=duration%20%3E%201e999",
    "/api/search?text=a&k=%C2%B2",
    "/api/search?text=a&k=%20%205",
    "/api/search?text=a&k=99999999999999999999999",
]


@pytest.mark.parametrize("url", BAD_GETS)
def test_bad_values_are_400(server: Server, url: str) -> None:
    _one_line_error(server.get(url), 400)


@pytest.mark.parametrize("k", ["²", "①", " 5", "٣", "-1", "1e3"])
def test_bad_k_on_upload_is_400(server: Server, k: str) -> None:
    files = {"file": ("q.png", _png_header_only(32, 32))}
    r = httpx.post(server.url + "/api/search", files=files, data={"k": k}, timeout=20)
    _one_line_error(r, 400)


# -- tiny files that decode huge ----------------------------------------------------------------------------


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG of width x height whose rows are all zero bytes (compresses to a few hundred bytes)."""
    raw = zlib.compress(b"\0" * (height * (1 + width * 3)), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _wav_header(rate: int, seconds: float, channels: int = 1) -> bytes:
    """A WAV header declaring `seconds` of 16-bit audio at `rate` Hz, followed by 4 bytes of samples."""
    frames = int(rate * seconds)
    data_bytes = frames * channels * 2
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_bytes & 0xFFFFFFFF)
    return b"RIFF" + struct.pack("<I", (len(riff) + data_bytes) & 0xFFFFFFFF) + riff + b"\1\0\2\0"


def _ply_declaring(points: int) -> bytes:
    head = f"ply\nformat binary_little_endian 1.0\nelement vertex {points}\n"
    return (head + "property float x\nproperty float y\nproperty float z\nend_header\n").encode() + b"\0" * 24


def _npy_declaring(rows: int) -> bytes:
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, 3), }}"
    header += " " * (118 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 48


TINY_HUGE = {
    "wide.png": lambda: _png_header_only(100_000, 1),
    "tall.png": lambda: _png_header_only(1, 100_000),
    "hours-at-1mhz.wav": lambda: _wav_header(1_000_000, 2000.0),
    "rate-zero.wav": lambda: _wav_header(0, 0.0) + b"\0" * 64,
    "billions.ply": lambda: _ply_declaring(3_000_000_000),
    "billions.npy": lambda: _npy_declaring(2_000_000_000),
    # 228 bytes: libjpeg held its 1.7 GiB of DCT coefficients while drawing it at 1/8
    "progressive.jpg": lambda: tiny_jpeg(24576, 24576, "progressive"),
}


@pytest.mark.parametrize("name", sorted(TINY_HUGE))
def test_tiny_files_that_decode_huge_are_400(server: Server, name: str) -> None:
    data = TINY_HUGE[name]()
    assert len(data) < 4096
    r = httpx.post(server.url + "/api/search", files={"file": (name, data)}, timeout=60)
    _one_line_error(r, 400)
    assert server.peak_rss < 2 * 2**30


# -- slow and vanishing clients ------------------------------------------------------------------------------


def _closed_within(sock: socket.socket, seconds: float) -> bytes:
    """What the server sent before it closed the connection; fails if it is still open after `seconds`."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except TimeoutError:
        pytest.fail(f"the connection was still open after {seconds} s")
    except ConnectionResetError:
        pass
    return got


def test_a_silent_connection_is_closed(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        started = time.monotonic()
        _closed_within(s, LIMITS["head_timeout"] + 3)
        assert time.monotonic() - started >= LIMITS["head_timeout"] * 0.9


def test_trickled_headers_are_cut_off(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        started = time.monotonic()
        s.sendall(b"GET /api/info HTTP/1.1\r\n")
        closed = False
        for _ in range(40):  # a header line every 0.2 s, for up to 8 s: the deadline is not reset by bytes
            time.sleep(0.2)
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        if not closed:
            assert _closed_within(s, 2) == b""
        assert time.monotonic() - started < LIMITS["head_timeout"] + 3


def test_trickled_body_is_cut_off_and_logged_as_a_client_that_went_away(server: Server) -> None:
    before = server.log_text()
    head = (
        b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
        b"Content-Length: 100000\r\n\r\n"
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    )
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(head)
        started = time.monotonic()
        other = server.get("/api/search?text=dog&k=1")  # others are served meanwhile
        assert other.status_code == 200
        for _ in range(40):
            time.sleep(0.2)
            try:
                s.sendall(b"\0" * 10)
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            _closed_within(s, 2)
        assert time.monotonic() - started < LIMITS["body_timeout"] + 4
    time.sleep(0.5)
    new = server.log_text()[len(before) :]
    assert "internal error" not in new and "Traceback" not in new, new


def test_abandoned_upload_is_not_an_internal_error(server: Server) -> None:
    before = server.log_text()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(
            b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
            b'Content-Length: 50000\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
            + b"\0"
            * 20000
        )
        time.sleep(0.3)
    time.sleep(1.0)
    new = server.log_text()[len(before) :]
    assert "internal error" not in new and "Traceback" not in new, new
    assert "went away" in new


def test_connections_past_the_cap_get_503(server: Server) -> None:
    held = []
    try:
        for _ in range(LIMITS["max_connections"]):
            held.append(socket.create_connection(("127.0.0.1", server.port)))
        time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", server.port)) as extra:
            got = _closed_within(extra, 3)
        assert got.startswith(b"HTTP/1.1 503") and b"too many connections" in got
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)


def test_a_bug_is_500_and_logged_once(server: Server) -> None:
    before = server.log_text()
    r = server.get("/test-only/bug")
    assert r.status_code == 500 and "Traceback" not in r.text
    assert r.json()["error"].startswith("internal error in avsearch (RuntimeError)")
    time.sleep(0.3)
    new = server.log_text()[len(before) :]
    assert new.count("Traceback") == 1, new
    assert new.count("RuntimeError: a deliberate bug") == 1, new


def test_memory_stayed_bounded(server: Server) -> None:
    """Over every case above (the module's tests run in file order), the server's RSS stayed bounded."""
    print(f"server peak RSS {server.peak_rss / 2**20:.0f} MiB")
    assert 0 < server.peak_rss < 2 * 2**30, server.peak_rss
