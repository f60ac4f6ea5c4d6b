"""One writer per index: an flock on a local folder, a renewed lease object on an object store.

Local folders: `flock` on <index>/.lock. The kernel drops it when the process dies (kill -9 included),
so a killed run never blocks the next one.

Object stores have no flock, and pyarrow (our file layer) cannot send a conditional PUT (If-None-Match),
so the lock there is a lease: the object <index>/.lock holds {host, pid, token, renewed}. A writer
  1. reads it; a live lease of another writer refuses the run in one line,
  2. writes its own, waits a moment and reads it back: of two writers that raced, only the one whose
     token is there goes on (the store keeps the last PUT),
  3. renews it every LEASE_TTL/4 seconds from a background thread while it writes, and deletes it at the
     end if it is still its own.
A writer whose lease was taken over (another run found it stale and wrote its own), or that could not
renew it for LEASE_TTL seconds (another run may have taken it over since), has lost it: its next write
(a table commit, the manifest, a FAISS file, the failed-files list: `WriterLock.check`) raises an
InputError saying so, and the run stops instead of writing beside the new writer.
A lease is stale, and taken over, when it was not renewed for LEASE_TTL seconds (a writer killed on
another machine), or at once when it names this host and a process id that no longer runs (a writer
killed here: the kill -9-then-resume case). This is a best-effort guard against two `avsearch index`
runs on one index, not a consensus protocol: two writers starting within the same fraction of a second
on different machines could both pass; LanceDB's own commits stay consistent even then.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from avsearch.errors import InputError
from avsearch.store.location import Location

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
LEASE_TTL = 60.0  # seconds without renewal after which another machine's lease is stale
SETTLE = 0.3  # seconds between writing a lease and reading it back (racing writers both land by then)


def busy(where: object, detail: str = "") -> InputError:
    return InputError(f"{where}: another `avsearch index` is writing this index{detail}")


class WriterLock:
    """What `writer_lock` holds. check(): call before each write; raises InputError once the lock is lost."""

    def check(self) -> None:
        """An flock is held until the process ends: never lost."""


@contextlib.contextmanager
def writer_lock(location: Location) -> Iterator[WriterLock]:
    """Hold the index's writer lock for the block (InputError when another writer holds it)."""
    if location.is_local:
        with _flock(Path(location.uri)):
            yield WriterLock()
    else:
        with _lease(location) as lease:
            yield lease


@contextlib.contextmanager
def _flock(index_dir: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; single-writer is then up to the user
        yield
        return
    fh = open(index_dir / LOCK_NAME, "w")  # noqa: SIM115 (held for the whole run)
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise busy(index_dir) from exc
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()


def _read_lease(location: Location) -> dict[str, Any] | None:
    data = location.read_bytes(LOCK_NAME)
    if data is None:
        return None
    try:
        lease = json.loads(data)
        return lease if isinstance(lease, dict) else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # a damaged lease object holds nobody: stale


def lease_is_stale(lease: dict[str, Any], now: float | None = None) -> bool:
    """Whether a lease may be taken over (see the module docstring for the rule)."""
    try:
        host, pid, renewed = str(lease["host"]), int(lease["pid"]), float(lease["renewed"])
    except (KeyError, TypeError, ValueError):
        return True
    if host == socket.gethostname() and not _running(pid):
        return True
    return (now if now is not None else time.time()) - renewed > LEASE_TTL


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's process: it runs
        return True
    return True


class _Lease(WriterLock):
    def __init__(self, location: Location) -> None:
        self.location = location
        self.token = uuid.uuid4().hex
        self.stop = threading.Event()
        self.lost: str | None = None  # why the lease was lost (None: still held)
        self.renewed_at = time.monotonic()  # when the lease the store last took from us was written

    def check(self) -> None:
        if self.lost is not None:
            raise InputError(f"{self.location}: this run stopped: {self.lost}")

    def body(self) -> bytes:
        lease = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token, "renewed": time.time()}
        return json.dumps(lease).encode()

    def held(self) -> bool:
        return (_read_lease(self.location) or {}).get("token") == self.token

    def renew_until_stopped(self) -> None:
        while not self.stop.wait(LEASE_TTL / 4):
            try:
                current = _read_lease(self.location) or {}
                if current.get("token") != self.token:
                    now = f"{current.get('host')} pid {current.get('pid')} holds it now" if current else "it is gone"
                    return self._lose(f"the writer lease was taken over by another run ({now})")
                stamp = time.monotonic()  # the lease written says "renewed now": others count from here
                self.location.write_bytes(LOCK_NAME, self.body())
                self.renewed_at = stamp
            except Exception as exc:  # a missed renewal is retried while the lease lasts (LEASE_TTL)
                log.warning("%s: lease renewal failed: %s", self.location, exc)
                if time.monotonic() - self.renewed_at > LEASE_TTL:
                    return self._lose(f"the writer lease could not be renewed for {LEASE_TTL:g} s ({exc})")

    def _lose(self, why: str) -> None:
        self.lost = why
        log.error("%s: %s; the run stops at its next write", self.location, why)


def _refusal(location: Location, lease: dict[str, Any]) -> InputError:
    age = time.time() - float(lease.get("renewed", 0.0))
    return busy(
        location,
        f" ({lease.get('host')} pid {lease.get('pid')}, lease renewed {age:.0f} s ago; "
        f"one not renewed for {LEASE_TTL:.0f} s is taken over)",
    )


@contextlib.contextmanager
def _lease(location: Location) -> Iterator[_Lease]:
    current = _read_lease(location)
    if current is not None and not lease_is_stale(current):
        raise _refusal(location, current)
    if current is not None:
        log.info("%s: taking over the stale lease of %s pid %s", location, current.get("host"), current.get("pid"))
    lease = _Lease(location)
    location.write_bytes(LOCK_NAME, lease.body())
    time.sleep(SETTLE)
    now = _read_lease(location) or {}
    if now.get("token") != lease.token:  # another writer wrote after us: it goes on, we stop
        raise _refusal(location, now)
    renewer = threading.Thread(target=lease.renew_until_stopped, name="avsearch-lease", daemon=True)
    renewer.start()
    try:
        yield lease
    finally:
        lease.stop.set()
        renewer.join()
        with contextlib.suppress(Exception):  # a lease left behind goes stale by itself
            if lease.lost is None and lease.held():
                location.delete(LOCK_NAME)
