"""The index a server answers from, re-opened when `avsearch index` commits to it.

An index run rewrites manifest.json (atomically) when it starts and again when it has refreshed the FAISS
files, so the manifest's bytes are the commit stamp: when they change, the Index and its SearchEngine are
opened anew (new modalities, bridges and FAISS builds are seen; on an object store the manifest object is
read, one GET per check), and the requests already running finish on
the old ones. Between the two writes the old engine keeps answering, searching exactly where a table has
moved past its FAISS index. Encoders are loaded once per process and handed to every re-opened Index
through its encoder_loader, so a re-open costs no model load (bridges, small, load again on first use).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsearch.embedding.models import EncoderLoader, default_loader
from avsearch.encoders.base import Encoder
from avsearch.errors import AvsearchError
from avsearch.modalities import TEXT
from avsearch.search.engine import SearchEngine
from avsearch.serve import threads
from avsearch.store.index import Index
from avsearch.store.location import Location
from avsearch.store.manifest import MANIFEST_NAME

log = logging.getLogger(__name__)


class SharedLoader:
    """An EncoderLoader that loads each (encoder, towers) once and hands the same object to every Index."""

    def __init__(self, base: EncoderLoader) -> None:
        self.base = base
        self._loaded: dict[tuple[str, tuple[str, ...]], Encoder] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str, towers: tuple[str, ...]) -> Encoder:
        key = (name, tuple(towers))
        with self._lock:  # two first queries at once must not load a model twice
            if key not in self._loaded:
                self._loaded[key] = self.base(name, towers)
            return self._loaded[key]


@dataclass
class Snapshot:
    """One committed state of the index: the Index, its engine, and what was derived from it."""

    index: Index
    engine: SearchEngine
    stamp: bytes  # manifest.json's bytes when opened
    opened: float = field(default_factory=time.time)
    info: dict[str, Any] | None = None  # /api/info, computed once per commit


class LiveIndex:
    """The current Snapshot of one index folder; `current()` notices a new commit (checked at most every
    `check_interval` seconds, by reading manifest.json) and re-opens.

    Searches go through `searching()`: at most `parallel` at once (the engine is safe for concurrent use;
    the bound keeps the cores from being shared among more searches than they can run).
    """

    def __init__(
        self,
        index_dir: str | Path | Location,
        *,
        weights_dir: str | Path | None = None,
        device: str | None = None,
        encoder_loader: EncoderLoader | None = None,
        check_interval: float = 0.5,
        parallel: int = 1,
        warm_towers: Collection[str] = (),
    ) -> None:
        self.location = Location.of(index_dir)
        self.index_dir = self.location.local_path or self.location.uri  # shown to people
        self.weights_dir = weights_dir
        self.device = device
        base = encoder_loader or default_loader(Path(weights_dir) if weights_dir else None, device)
        self.loader = SharedLoader(base)
        self.check_interval = check_interval
        self.warm_towers = tuple(warm_towers)  # "<encoder>:<tower>" warm() loads beside the text query's
        self.reopened = 0  # how many times a new commit was picked up (for tests and logs)
        self._searches = threading.BoundedSemaphore(max(1, parallel))
        self._reopen_lock = threading.Lock()
        self._checked = time.monotonic()
        self._snapshot = self._open(self._read_stamp())

    def _read_stamp(self) -> bytes:
        try:
            return self.location.read_bytes(MANIFEST_NAME) or b""
        except (OSError, AvsearchError):
            return b""  # gone or unreachable: Index.open says so in its own words

    def _open(self, stamp: bytes) -> Snapshot:
        index = Index.open(self.location, weights_dir=self.weights_dir, device=self.device, encoder_loader=self.loader)
        index.tables.modalities()  # an unreadable tables folder fails here, at start, not on the first query
        return Snapshot(index, SearchEngine(index), stamp)

    def current(self) -> Snapshot:
        """The snapshot of the latest commit (re-opened here when the manifest changed)."""
        now = time.monotonic()
        if now - self._checked < self.check_interval:
            return self._snapshot
        # One request re-opens; others meanwhile answer from the snapshot they have.
        if not self._reopen_lock.acquire(blocking=False):
            return self._snapshot
        try:
            self._checked = now
            stamp = self._read_stamp()
            if stamp and stamp != self._snapshot.stamp:
                try:
                    self._snapshot = self._open(stamp)
                    self.reopened += 1
                    log.info("%s: new index commit picked up", self.index_dir)
                except AvsearchError as exc:  # e.g. a manifest of a newer schema: keep serving the last good one
                    log.warning("%s: cannot re-open the index (%s); still serving the previous commit", self, exc)
            return self._snapshot
        finally:
            self._reopen_lock.release()

    @contextlib.contextmanager
    def searching(self) -> Iterator[SearchEngine]:
        """The current engine, held for one search (waiting while `parallel` searches run)."""
        snapshot = self.current()
        with self._searches:
            threads.in_this_thread()  # FAISS's thread count is per thread (serve/threads.py)
            yield snapshot.engine

    def warm(self) -> float | None:
        """Load what a text query needs (text encoders, bridges, FAISS indexes) by running one, and the
        `warm_towers` of encoders this index uses (an ONNX Runtime tower is exported then, if it has not
        been: serve/towers.py); the seconds it took (logged), or None when it could not (the first real
        query then says why)."""
        started = time.perf_counter()
        try:
            with self.searching() as engine:
                engine.search_text("warm-up", k=1)
                used = {entry.encoder for entry in engine.manifest.modalities.values()}
                for name, _, tower in (t.partition(":") for t in self.warm_towers):
                    if name in used and tower != TEXT:  # text towers: loaded by the search above, if used
                        engine.models.encoder(name, tower)
        except AvsearchError as exc:  # e.g. missing weights: the first real query reports it
            log.warning("warm-up skipped: %s", exc)
            return None
        seconds = time.perf_counter() - started
        log.info("models loaded for text queries in %.1f s: the first search is warm", seconds)
        return seconds

    def __str__(self) -> str:
        return str(self.index_dir)
