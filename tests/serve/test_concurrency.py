"""Concurrent searches: the engine answers many threads at once exactly as it answers them one by one, and
the server computes up to `parallel` searches at the same time. Index from the test-only FAKE encoder
(tests/search/fake_encoder.py), slowed down here so that searches overlap."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fastapi.testclient import TestClient

from avsearch.search.engine import SearchEngine
from avsearch.search.filters import SearchFilters
from avsearch.serve.app import create_app
from avsearch.serve.config import SearchLimits
from avsearch.store.index import Index
from tests.search.fake_encoder import FakeLoader
from tests.serve.conftest import Library

TEXTS = [f"query number {i}" for i in range(12)]


class SlowLoader(FakeLoader):
    """Encoders that take a while and count how many encodes run at the same moment."""

    def __init__(self, delay: float = 0.05) -> None:
        super().__init__()
        self.delay, self.running, self.most = delay, 0, 0
        self._lock = threading.Lock()

    def __call__(self, name: str, towers: tuple[str, ...]):  # noqa: ANN204 - the fake encoder
        encoder = super().__call__(name, towers)
        encode_text, encode_files = encoder.encode_text, encoder.encode_files

        def slowly(fn):  # noqa: ANN001, ANN202
            def run(*args):  # noqa: ANN002, ANN202
                with self._lock:
                    self.running += 1
                    self.most = max(self.most, self.running)
                try:
                    time.sleep(self.delay)
                    return fn(*args)
                finally:
                    with self._lock:
                        self.running -= 1

            return run

        encoder.encode_text, encoder.encode_files = slowly(encode_text), slowly(encode_files)
        return encoder


class BarrierLoader(FakeLoader):
    """Encoders whose encode waits until `parties` encodes are under way at once: a server that runs
    searches one at a time never gets there, and the wait breaks (BrokenBarrierError, a 500) after
    `timeout` seconds. No timing is measured: two searches either meet inside the encoder or fail."""

    def __init__(self, parties: int = 2, timeout: float = 10.0) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=timeout)

    def __call__(self, name: str, towers: tuple[str, ...]):  # noqa: ANN204 - the fake encoder
        encoder = super().__call__(name, towers)
        encode_text, encode_files = encoder.encode_text, encoder.encode_files

        def meeting(fn):  # noqa: ANN001, ANN202
            def run(*args):  # noqa: ANN002, ANN202
                self.barrier.wait()
                return fn(*args)

            return run

        encoder.encode_text, encoder.encode_files = meeting(encode_text), meeting(encode_files)
        return encoder


def _answers(engine: SearchEngine, library: Library, jobs: Sequence[tuple[str, object]]) -> list[list[tuple]]:
    out = []
    for kind, arg in jobs:
        if kind == "text":
            results = engine.search_text(str(arg), k=5)
        elif kind == "file":
            results = engine.search_file(arg, k=5)  # type: ignore[arg-type]
        else:
            results = engine.search_text("filtered", k=5, filters=SearchFilters(path_glob=str(arg)))
        out.append([(r.target, [(h.id, round(h.score, 6)) for h in r.hits]) for r in results])
    return out


def test_threads_get_what_one_thread_gets(library: Library) -> None:
    jobs = [("text", t) for t in TEXTS] + [("file", p) for p in library.sounds + library.images[:2]]
    jobs += [("glob", "*/pics/*"), ("glob", "*/sounds/*")] * 2
    alone = _answers(SearchEngine(Index.open(library.index, encoder_loader=FakeLoader())), library, jobs)
    engine = SearchEngine(Index.open(library.index, encoder_loader=SlowLoader(0.01)))
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda job: _answers(engine, library, [job])[0], jobs * 3))
    assert together == alone * 3


def test_the_server_runs_searches_in_parallel(library: Library) -> None:
    loader = SlowLoader(0.2)
    app = create_app(library.index, encoder_loader=loader, parallel=2, reload_interval=0)
    with TestClient(app) as c, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda t: c.get("/api/search", params={"text": t, "k": 3}), TEXTS[:4]))
    assert all(r.status_code == 200 for r in answers)
    assert loader.most == 2  # two at once, never more than `parallel`
    serial = SlowLoader(0.05)
    app = create_app(library.index, encoder_loader=serial, parallel=1, reload_interval=0)
    with TestClient(app) as c, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda t: c.get("/api/search", params={"text": t, "k": 3}), TEXTS[:4]))
    assert serial.most == 1


def test_two_searches_are_inside_the_encoder_at_once(library: Library) -> None:
    """Both kinds of search endpoint (a sync one in the threadpool, the async upload one handing its
    search to a thread) compute at the same time: each encode of a pair waits for the other's. Pairs:
    two texts, two uploads, a text and an upload. Red with parallel=1, with the text endpoint run on the
    event loop (async def) or with the upload's search done on the loop."""
    app = create_app(library.index, encoder_loader=BarrierLoader(2), parallel=2, reload_interval=0)
    picture = library.images[0].read_bytes()

    def text(c: TestClient, n: int) -> int:
        return c.get("/api/search", params={"text": f"meet me {n}", "k": 2, "target": "image"}).status_code

    def upload(c: TestClient, n: int) -> int:
        files = {"file": (f"q{n}.png", picture)}
        return c.post("/api/search", files=files, data={"k": "2", "target": "image"}).status_code

    with TestClient(app) as c, ThreadPoolExecutor(2) as pool:
        for r, pair in enumerate(((text, text), (upload, upload), (text, upload))):
            # distinct texts: a thread that saw one before reuses its vector (no encode, no meeting)
            answers = [pool.submit(call, c, 2 * r + n) for n, call in enumerate(pair)]
            assert [a.result() for a in answers] == [200, 200], pair


def test_search_limits_share_the_cores() -> None:
    assert SearchLimits().resolved(cores=2) == (2, 1)
    assert SearchLimits(parallel=1).resolved(cores=8) == (1, 8)
    assert SearchLimits(parallel=3, threads=2).resolved(cores=2) == (3, 2)
    assert np.all(np.array(SearchLimits().resolved(cores=1)) == 1)


def test_each_search_thread_gets_the_faiss_thread_count(library: Library, monkeypatch) -> None:  # noqa: ANN001
    """FAISS's OpenMP count is per thread: set in the main thread only, a server thread's searches ran with
    one thread per core (each search's idle team member spinning on the other core). Red without
    LiveIndex.searching's in_this_thread."""
    import faiss
    import torch

    from avsearch.serve import threads
    from avsearch.serve.live import LiveIndex

    live = LiveIndex(library.index, encoder_loader=FakeLoader())
    before = faiss.omp_get_max_threads(), torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # set_search_threads writes it; restored after the test
    monkeypatch.setattr(threads, "_threads", None)
    seen: dict[str, int] = {}

    def search() -> None:
        seen["plain thread"] = faiss.omp_get_max_threads()
        with live.searching() as engine:
            seen["searching"] = faiss.omp_get_max_threads()
            engine.search_text("threads", k=2)

    try:
        threads.set_search_threads(3)
        worker = threading.Thread(target=search)
        worker.start()
        worker.join()
    finally:
        faiss.omp_set_num_threads(before[0])
        torch.set_num_threads(before[1])
    assert seen == {"plain thread": seen["plain thread"], "searching": 3}
    assert seen["plain thread"] != 3  # what the server's threads had before (the global default)
