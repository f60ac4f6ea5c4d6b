"""Download one file from a URL into a cache: progress on stderr, resume by HTTP Range, bounded retries with
backoff, size and SHA-256 checks (configs/download.toml).

The bytes go to `<name>.part`, with the server's validators (ETag, Last-Modified) and the file's size in
`<name>.part.json`; the file gets its own name only once complete and verified, so a partial file is never
taken for a weight file. After a cut connection the next attempt (and, once the retries are spent, the next
run) asks for the rest with `Range` + `If-Range`; a server that ignores Range or has a changed file answers 200
with the whole file, which then replaces the partial one. Once the retries are spent (or the server cannot be
reached) the `.part` stays for the next run if the server has shown it takes Range requests; Ctrl-C leaves it.
Any other failure (HTTP 4xx, a size or SHA-256 that does not match, a disk error) deletes the partial file.
Two processes fetching the same file at once are not coordinated (a first run is one process).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from avsearch.errors import ChecksumMismatchError, ConfigError, DownloadError
from avsearch.settings import load_sections

log = logging.getLogger(__name__)

CONFIG_NAME = "download.toml"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})  # answers worth asking again after a pause
# Transport failures worth a retry. Not OSError at large: a failed name lookup or a refused connect on an
# off-line machine would otherwise wait through every backoff before the one-line error.
RETRY_ERRORS = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, TimeoutError, http.client.IncompleteRead)


@dataclass(frozen=True)
class DownloadSettings:
    retries: int = 5  # new attempts after a cut connection, each resuming where the last one stopped
    backoff: float = 1.0  # s before the first retry, doubled for each next one
    backoff_max: float = 30.0  # s, the longest wait
    timeout: float = 60.0  # s a connect or read may wait
    chunk_size: int = 1 << 20  # bytes per read

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"[download] retries = {self.retries}: expected 0 or more")
        if self.backoff < 0 or self.backoff_max < 0:
            raise ConfigError("[download] backoff, backoff_max: expected 0 or more seconds")
        if not self.timeout > 0 or self.chunk_size < 1:
            raise ConfigError("[download] timeout, chunk_size: expected positive numbers")


@dataclass(frozen=True)
class DownloadConfig:
    download: DownloadSettings = DownloadSettings()


def load_download_settings(path: str | Path | None = None) -> DownloadSettings:
    """configs/download.toml (or `path`); missing keys take the defaults, unknown ones are errors."""
    return load_sections(DownloadConfig, CONFIG_NAME, path).download


class _Cut(Exception):
    """The transfer stopped before the end; another attempt may resume it."""


@dataclass
class _Partial:
    """What the `.part` file's bytes belong to: the URL, the server's validators and the full size."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None
    ranges: bool = False  # the server has answered a Range request (or says Accept-Ranges: bytes)

    def if_range(self) -> str | None:
        """The validator to send with If-Range (weak ETags are not allowed there)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


def fetch_url(
    url: str,
    target: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool | None = None,
    settings: DownloadSettings | None = None,
) -> Path:
    """Download `url` to `target` (resuming a `.part` left by an earlier run); returns `target`.

    `size`/`sha256`: the published size and digest, checked when given. `progress`: None shows a bar on stderr
    only when stderr is a terminal; True/False force it. Raises DownloadError (ChecksumMismatchError for a
    wrong digest), or the OSError of a failure that is not the server's (e.g. the name does not resolve).
    """
    settings = settings or load_download_settings()
    target.parent.mkdir(parents=True, exist_ok=True)
    part, meta = _part_paths(target)
    state = _load_state(meta, url)
    if state is None and part.exists():
        part.unlink()  # bytes of unknown origin (another URL, or no record): never resume them
    cuts = 0
    try:
        while True:
            try:
                state = _attempt(url, part, meta, state or _Partial(url), size, settings, progress, target.name)
                break
            except _Cut as exc:
                cuts += 1
                if cuts > settings.retries:
                    raise _GaveUp(f"{target.name}: download from {url} failed {cuts} times, last: {exc}") from exc
                wait = min(settings.backoff * 2 ** (cuts - 1), settings.backoff_max)
                log.warning("%s: %s; retry %d of %d in %.0f s", target.name, exc, cuts, settings.retries, wait)
                time.sleep(wait)
                state = _load_state(meta, url)  # what the cut attempt learnt of the file (size, validators)
    except (_GaveUp, urllib.error.URLError) as exc:
        # Out of retries, or the server cannot be reached: keep the bytes for the next run only when the server
        # has shown it can resume them.
        state = _load_state(meta, url)
        have = part.stat().st_size if part.exists() else 0
        kept = state is not None and state.ranges and have > 0
        if not kept:
            _remove(part, meta)
        if isinstance(exc, urllib.error.URLError):
            raise
        kept_note = f"; the {have} bytes received stay in {part} for the next run" if kept else ""
        raise DownloadError(f"{exc}{kept_note}") from exc
    except KeyboardInterrupt:
        raise  # an interrupted download is resumable like a cut one: keep the .part
    except BaseException:
        _remove(part, meta)
        raise
    _finish(part, meta, target, url, size if size is not None else state.total, sha256)
    return target


class _GaveUp(Exception):
    """A download cut more often than the retries allow."""


def _part_paths(target: Path) -> tuple[Path, Path]:
    return target.with_name(target.name + ".part"), target.with_name(target.name + ".part.json")


def _load_state(meta: Path, url: str) -> _Partial | None:
    try:
        state = _Partial(**json.loads(meta.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return state if state.url == url else None


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _attempt(
    url: str,
    part: Path,
    meta: Path,
    state: _Partial,
    size: int | None,
    settings: DownloadSettings,
    progress: bool | None,
    name: str,
) -> _Partial:
    """One request: the whole file, or the rest of it after the `.part`'s bytes. Returns the state to keep."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "avsearch", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator := state.if_range():
            headers["If-Range"] = validator
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=settings.timeout)
    except RETRY_ERRORS as exc:  # raised while reading the answer's headers (urllib wraps only the send)
        raise _Cut(f"{type(exc).__name__}: {exc}") from exc
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            if offset == state.total:
                return state  # the .part already holds the whole file (a run stopped before moving it)
            part.unlink()  # the range lies past the file's end: the file is not the one we have bytes of
            raise _Cut(f"HTTP 416 for bytes {offset}- (the file changed); starting over") from exc
        if exc.code in RETRY_STATUS:
            raise _Cut(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"{name}: HTTP {exc.code} {exc.reason} from {url}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, RETRY_ERRORS):
            raise _Cut(str(exc.reason) or type(exc.reason).__name__) from exc
        raise
    with resp:
        if resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != offset or (state.total is not None and total != state.total):
                part.unlink()
                raise _Cut(f"the server sent bytes {start}- of {total} for {offset}- of {state.total}; starting over")
            state.ranges, state.total = True, total if state.total is None else state.total
        else:  # 200: the whole file (Range ignored, or If-Range found the file changed): start over
            offset = 0
            length = resp.headers.get("Content-Length")
            state = _Partial(
                url,
                etag=resp.headers.get("ETag"),
                last_modified=resp.headers.get("Last-Modified"),
                total=int(length) if length is not None else size,
                ranges=resp.headers.get("Accept-Ranges", "").strip().lower() == "bytes",
            )
            if size is not None and state.total != size:
                raise DownloadError(f"{name}: {url} has {state.total} bytes, expected {size}")
        meta.write_text(json.dumps(asdict(state)), encoding="utf-8")
        _copy(resp, part, offset, state.total, settings.chunk_size, progress, name)
    have = part.stat().st_size
    if state.total is not None and have < state.total:
        # http.client ends a body quietly when the server closes early, so the length is checked here.
        raise _Cut(f"connection closed at byte {have} of {state.total}")
    return state


def _content_range(value: str | None) -> tuple[int, int | None]:
    """(first byte, full size or None) of a `Content-Range: bytes a-b/n` header."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value or "")
    if not match:
        raise _Cut(f"a 206 answer with Content-Range {value!r}")
    return int(match[1]), None if match[2] == "*" else int(match[2])


def _copy(resp, part: Path, offset: int, total: int | None, chunk: int, progress: bool | None, name: str) -> None:
    # tqdm's disable=None turns the bar off when the stream is not a terminal (pipes, logs, tests).
    bar = tqdm(
        desc=name,
        total=total,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
    )
    with bar, part.open("ab" if offset else "wb") as out:
        try:
            while data := resp.read(chunk):
                out.write(data)
                bar.update(len(data))
        except RETRY_ERRORS as exc:
            raise _Cut(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc


def _finish(part: Path, meta: Path, target: Path, url: str, size: int | None, sha256: str | None) -> None:
    """Check the complete `.part` and give it the file's name; a wrong size or digest deletes it."""
    have = part.stat().st_size
    if size is not None and have != size:
        _remove(part, meta)
        raise DownloadError(f"{target.name}: {have} bytes downloaded from {url}, expected {size}; the file was deleted")
    if sha256:
        digest = hashlib.sha256()
        with part.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != sha256.lower():
            _remove(part, meta)
            raise ChecksumMismatchError(target.name, sha256.lower(), digest.hexdigest(), url)
    os.replace(part, target)
    meta.unlink(missing_ok=True)
