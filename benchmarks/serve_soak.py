"""Soak benchmark of `avsearch serve`: a mixed load for minutes while the server's RSS is sampled.

`benchmarks/serve.py --soak MINUTES` runs this load after its other phases, on its server; this script runs
it alone, with the options to look into memory (--launcher, --tracemalloc, --env). Builds (or, with
--reuse, reuses) under --work the index of benchmarks/serve.py (a generated media folder, real files so
items, thumbnails and media fetches are answered, plus --rows synthetic vectors so searches scan a
realistic table; serve.build), starts the server in a subprocess on 127.0.0.1 and runs --clients clients,
each request one of (by weight):
  text search (distinct texts; one in four with a `where` filter of a distinct value), an item's row,
  /similar, a thumbnail, the item's file with an HTTP Range, an upload search (small WAV or PNG).
It is bounded by --seconds and --max-requests. The server's VmRSS (and RssAnon, RssFile, threads) is read
from /proc/PID/status every --sample seconds; the report gives RSS at start (server answering, no query
yet), after warm-up (--warmup seconds and --warmup-requests requests: models, FAISS indexes, thumbnails made),
at the end and its peak, with requests/s and p50/p99 latency per request kind.

Without --weights-dir (or AVSEARCH_WEIGHTS) the encoders are the REAL CLIP ViT-B/32 and CLAP HTSAT
architectures with RANDOM weights (tests/weights_factory.py), as in benchmarks/serve.py.

The server is `avsearch serve` (what users run) unless --launcher: then this script's own launcher
(`--as-server`, below) creates the app as the CLI does and adds test-only routes: /test-only/memory (RSS,
glibc malloc arenas, pyarrow's pool, live Python objects by type, tracemalloc's top growth since the first
call when --tracemalloc N frames) and /test-only/trim (glibc malloc_trim(0): RSS before/after), both called
after warm-up and at the end: what stays after a trim is memory in use. --env NAME=VALUE sets the server's
environment: `avsearch serve` caps glibc's arenas at 2 (avsearch/allocator.py, with the figures this
script measured); MALLOC_ARENA_MAX=16 (8 per core on 2 cores) gives glibc's default back to compare.

    .venv/bin/python benchmarks/serve_soak.py                                    # the 10-minute soak
    .venv/bin/python benchmarks/serve_soak.py --reuse --seconds 240 --env MALLOC_ARENA_MAX=16
    .venv/bin/python benchmarks/serve_soak.py --reuse --seconds 600 --launcher --tracemalloc 4
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/ helpers (random weights in upstream layouts, bridges, media)
sys.path.insert(0, str(ROOT / "benchmarks"))
from serve import PHRASES, index_options, prepare, serve, stop  # noqa: E402 - the shared start-up

# request kind -> weight (out of 100)
MIX = {"text": 30, "item": 15, "similar": 10, "thumbnail": 12, "media": 12, "upload_wav": 11, "upload_png": 10}


# -- the server ---------------------------------------------------------------------------------------------


def start_server(args: argparse.Namespace, index: Path, weights: Path) -> tuple[subprocess.Popen, str]:
    """`avsearch serve`, or with --launcher this script's instrumented one, with --env's variables."""
    from serve import free_port, launch

    env = dict(os.environ)
    for pair in args.env:
        name, _, value = pair.partition("=")
        env[name] = value
    if not args.launcher:
        return serve(index, weights, args.work / "server.log", env)
    port = free_port()
    cmd = [sys.executable, __file__, "--as-server", index, port, weights, str(args.tracemalloc)]
    return launch(cmd, port, args.work / "server.log", env), f"http://127.0.0.1:{port}"


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile (kB) and Threads of a process, from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                out[name] = int(value.split()[0])
    return out


class Sampler(threading.Thread):
    """The server's /proc status every `every` seconds, with the requests done so far."""

    def __init__(self, pid: int, every: float, done: collections.Counter) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.done = pid, every, done
        self.samples: list[tuple[float, int, dict[str, int]]] = []  # (t, requests done, status)
        self.t0 = time.monotonic()
        self.stop = threading.Event()
        self.warmup, self.warmup_requests = 0.0, 0
        self.at_warm = None  # called once, from the first sample after warm-up

    def warm(self, sample: tuple[float, int, dict[str, int]]) -> bool:
        return sample[0] >= self.warmup and sample[1] >= self.warmup_requests

    def sample(self) -> tuple[float, int, dict[str, int]]:
        s = (time.monotonic() - self.t0, sum(self.done.values()), proc_status(self.pid))
        self.samples.append(s)
        return s

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                sample = self.sample()
            except OSError:
                return
            if self.at_warm is not None and self.warm(sample):
                call, self.at_warm = self.at_warm, None
                call()


# -- the clients ----------------------------------------------------------------------------------------------


def make_requests(url: str, media: Path, work: Path):  # noqa: ANN201
    """kind -> request(client, rng, i) for the mixed load."""
    from avsearch.store.table_schema import path_key
    from tests.search.media_factory import write_audio, write_image

    pictures = sorted(p for p in (media / "pictures").rglob("*") if p.is_file())
    everything = pictures + sorted((media / "sounds").glob("*.wav"))
    ids = [path_key(str(p)) for p in everything]
    picture_ids = [path_key(str(p)) for p in pictures]
    sizes = {path_key(str(p)): p.stat().st_size for p in everything}
    wav = write_audio(work / "queries" / "q.wav", 7, seconds=1.0, rate=16_000).read_bytes()
    png = write_image(work / "queries" / "q.png", 7, size=128).read_bytes()
    targets = ["all", "image", "audio"]

    def text(c, rng, i):  # noqa: ANN001, ANN202
        params = {"text": f"{rng.choice(PHRASES)} {i}", "k": 10, "target": rng.choice(targets)}
        if i % 4 == 0:  # a distinct filter each time: the filter caches must stay bounded
            params["where"] = f"size > {rng.randrange(1, 5_000_000)}"
        return c.get(url + "/api/search", params=params)

    def item(c, rng, i):  # noqa: ANN001, ANN202
        return c.get(f"{url}/api/items/{rng.choice(ids)}")

    def similar(c, rng, i):  # noqa: ANN001, ANN202
        return c.get(f"{url}/api/items/{rng.choice(ids)}/similar", params={"k": 10, "target": rng.choice(targets)})

    def thumbnail(c, rng, i):  # noqa: ANN001, ANN202
        return c.get(f"{url}/api/items/{rng.choice(picture_ids)}/thumbnail")

    def media_range(c, rng, i):  # noqa: ANN001, ANN202
        one = rng.choice(ids)
        start = rng.randrange(0, sizes[one] - 1)
        end = min(sizes[one] - 1, start + rng.randrange(1, 256 * 1024))
        return c.get(f"{url}/api/items/{one}/media", headers={"Range": f"bytes={start}-{end}"})

    def upload(name: str, data: bytes):  # noqa: ANN202
        return lambda c, rng, i: c.post(
            url + "/api/search", files={"file": (name, data)}, data={"k": "10", "target": rng.choice(targets)}
        )

    return {
        "text": text,
        "item": item,
        "similar": similar,
        "thumbnail": thumbnail,
        "media": media_range,
        "upload_wav": upload("q.wav", wav),
        "upload_png": upload("q.png", png),
    }


def run_mixed(requests, clients: int, seconds: float, max_requests: int, sampler: Sampler, done) -> dict:  # noqa: ANN001
    """`clients` threads, each request's kind drawn by MIX, until the time or the request budget ends."""
    import httpx

    kinds = list(MIX)
    weights = [MIX[k] for k in kinds]
    latencies: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)  # kind -> (t, ms)
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    counter = iter(range(max_requests))

    def worker(n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(timeout=300) as client:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                kind = rng.choices(kinds, weights)[0]
                t = time.perf_counter()
                try:
                    r = requests[kind](client, rng, i)
                    ok, why = r.status_code in (200, 206), f"{kind} {r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, why = False, f"{kind} {type(exc).__name__}: {exc}"
                dt = (time.perf_counter() - t) * 1e3
                with lock:
                    if ok:
                        latencies[kind].append((time.monotonic() - sampler.t0, dt))
                        done[kind] += 1
                    else:
                        errors.append(why)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {"latencies": latencies, "errors": errors, "seconds": time.perf_counter() - started}


# -- the report -------------------------------------------------------------------------------------------------


def _mb(kb: int) -> str:
    return f"{kb / 1024:7.0f} MB"


def report(run: dict, sampler: Sampler, start: tuple, url: str, launcher: bool) -> None:  # noqa: ANN001

    every = [(t, ms) for lat in run["latencies"].values() for t, ms in lat]
    n = len(every)
    print(f"\n{n} requests in {run['seconds']:.1f} s = {n / run['seconds']:.1f} req/s, {len(run['errors'])} errors")
    if run["errors"]:
        print(f"  first errors: {collections.Counter(e[:80] for e in run['errors']).most_common(3)}")
    rows = [("all", [ms for _, ms in every])] + [(k, [ms for _, ms in v]) for k, v in sorted(run["latencies"].items())]
    for kind, ms in rows:
        if ms:
            p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
            print(f"  {kind:<11} {len(ms):>6} requests  p50 {p50:8.1f} ms  p99 {p99:8.1f} ms")
    samples = sampler.samples
    warm = next((s for s in samples if sampler.warm(s)), samples[-1])
    after = [ms for t, ms in every if t >= warm[0]]
    if after:
        print(f"  after warm-up: p50 {np.percentile(after, 50):.1f} ms  p99 {np.percentile(after, 99):.1f} ms")
    end = samples[-1]
    peak = max(samples, key=lambda s: s[2]["VmRSS"])
    print("\nserver memory (VmRSS; RssAnon = heap and anonymous maps, RssFile = mapped files)")
    for name, (t, done, st) in (("start", start), ("after warm-up", warm), ("end", end), ("peak", peak)):
        print(
            f"  {name:<14} t={t:6.0f} s  {done:>6} requests  VmRSS {_mb(st['VmRSS'])}  RssAnon {_mb(st['RssAnon'])}"
            f"  RssFile {_mb(st['RssFile'])}  threads {st['Threads']}"
        )
    span = end[0] - warm[0]
    if span > 0:
        growth = (end[2]["VmRSS"] - warm[2]["VmRSS"]) / 1024
        per = growth / max(1, end[1] - warm[1]) * 1000
        print(f"  after warm-up: {growth:+.0f} MB over {span:.0f} s ({per:+.1f} MB per 1000 requests)")
    # a coarse timeline (10 points) to tell a plateau from a slope
    step = max(1, len(samples) // 10)
    line = "  ".join(f"{t:.0f}s:{st['VmRSS'] / 1024:.0f}" for t, _, st in samples[::step] + [samples[-1]])
    print(f"  timeline (s:MB) {line}")
    if launcher:
        print("\nlauncher's /test-only/memory at the end:", _memory(url, 8000))
        print(f"at the end, {_trim(url)} (what stays is in use)")


def _memory(url: str, limit: int) -> str:
    import httpx

    try:
        text = json.dumps(httpx.get(url + "/test-only/memory", timeout=300).json(), indent=1)
    except httpx.HTTPError as exc:
        return f"no answer: {exc!r}"
    return text[:limit]


def _trim(url: str) -> str:
    import httpx

    trim = httpx.post(url + "/test-only/trim", timeout=300).json()
    return f"malloc_trim(0): VmRSS {trim['before_kb'] / 1024:.0f} -> {trim['after_kb'] / 1024:.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    index_options(ap, ROOT / "runs" / "serve-soak", 20_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--max-requests", type=int, default=1_000_000)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds of load counted as warm-up, at least")
    ap.add_argument("--warmup-requests", type=int, default=200, help="requests counted as warm-up, at least")
    ap.add_argument("--sample", type=float, default=2.0, help="seconds between RSS samples")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE in the server's environment")
    ap.add_argument("--launcher", action="store_true", help="this script's instrumented launcher, not the CLI")
    ap.add_argument("--tracemalloc", type=int, default=0, help="with --launcher: tracemalloc frames (0: off)")
    args = ap.parse_args()
    index, media, weights = prepare(args, f"; server env {args.env or 'as is'}")
    make_requests("", media, args.work)  # once before the server starts: fails early on a bad media folder
    proc, url = start_server(args, index, weights)
    try:
        soak(url, proc, media, args.work, args.clients, args.seconds, args)
    finally:
        stop(proc)


def soak(
    url: str,
    proc: subprocess.Popen,
    media: Path,
    work: Path,
    clients: int,
    seconds: float,
    args: argparse.Namespace | None = None,
) -> None:
    """The mixed load on a running server, its RSS sampled; the report (and samples.json under `work`).
    `args`: this script's options (warm-up, sampling, --launcher); None takes their defaults."""
    warmup, warmup_requests, every = (args.warmup, args.warmup_requests, args.sample) if args else (60.0, 200, 2.0)
    launcher, max_requests = (args.launcher, args.max_requests) if args else (False, 1_000_000)
    print(f"\nmixed load: {clients} clients for {seconds:.0f} s (load avg {os.getloadavg()[0]:.1f})", flush=True)
    requests = make_requests(url, media, work)
    done: collections.Counter = collections.Counter()
    sampler = Sampler(proc.pid, every, done)
    sampler.warmup, sampler.warmup_requests = warmup, warmup_requests
    if launcher:  # the launcher's first /test-only/memory call is tracemalloc's baseline

        def at_warm() -> None:
            print("memory after warm-up:", _memory(url, 600), flush=True)
            print(f"after warm-up, {_trim(url)} (what stays is in use)", flush=True)

        sampler.at_warm = at_warm
    start = sampler.sample()
    sampler.start()
    run = run_mixed(requests, clients, seconds, max_requests, sampler, done)
    sampler.stop.set()
    sampler.join()
    sampler.sample()
    report(run, sampler, start, url, launcher)
    (work / "samples.json").write_text(json.dumps(sampler.samples))
    print(f"load avg at the end {os.getloadavg()[0]:.1f}; samples in {work / 'samples.json'}")


# -- the instrumented launcher (--launcher) --------------------------------------------------------------------


def malloc_arenas(libc) -> int:  # noqa: ANN001
    """How many glibc malloc arenas the process has (malloc_info's <heap> elements)."""
    import ctypes
    import re
    import tempfile

    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "malloc_info.xml")
        f = libc.fopen(path.encode(), b"w")
        libc.malloc_info(0, f)
        libc.fclose(f)
        return len(re.findall(r"<heap nr=", Path(path).read_text()))


def serve_instrumented(index: str, port: str, weights: str, frames: str) -> None:
    """The app as `avsearch serve` makes it (arenas capped, search threads set, create_app + run_server with
    serve.toml's limits), plus test-only routes that report memory. tracemalloc, when asked for, starts on
    the first /test-only/memory call (the soak makes it after warm-up; tracing model loads takes minutes)."""
    import ctypes
    import gc
    import tracemalloc

    from avsearch.allocator import limit_malloc_arenas

    limit_malloc_arenas()  # as `avsearch serve` does first (a MALLOC_ARENA_MAX given by --env wins)

    from avsearch.serve.app import create_app
    from avsearch.serve.config import load_serve_config
    from avsearch.serve.run import run_server, set_search_threads

    config = load_serve_config()
    parallel, threads = config.search.resolved()
    set_search_threads(threads)
    app = create_app(index, weights_dir=weights, device="cpu", warm=True, parallel=parallel)
    first: list[tracemalloc.Snapshot] = []
    libc = ctypes.CDLL("libc.so.6")

    @app.get("/test-only/memory")
    def memory() -> dict:
        import pyarrow as pa

        gc.collect()
        out: dict = {"status_kb": proc_status(os.getpid()), "malloc_arenas": malloc_arenas(libc)}
        out["pyarrow_allocated"] = pa.total_allocated_bytes()
        pool = pa.default_memory_pool()
        out["pyarrow_pool"] = {"backend": pool.backend_name, "bytes": pool.bytes_allocated(), "max": pool.max_memory()}
        counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
        out["objects"] = dict(counts.most_common(25))
        out["objects_total"] = sum(counts.values())
        if int(frames) and not tracemalloc.is_tracing():
            tracemalloc.start(int(frames))  # from the first call (after warm-up): traces what is allocated since
        if tracemalloc.is_tracing():
            snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            out["traced_bytes"] = tracemalloc.get_traced_memory()
            if not first:
                first.append(snap)
            top = snap.compare_to(first[0], "traceback")[:15]
            out["growth_since_first_call"] = [
                {"kb": round(s.size_diff / 1024), "count": s.count_diff, "where": s.traceback.format()[-6:]}
                for s in top
            ]
            out["largest"] = [
                {"kb": round(s.size / 1024), "count": s.count, "where": s.traceback.format()[-4:]}
                for s in snap.statistics("traceback")[:10]
            ]
        return out

    @app.post("/test-only/trim")
    def trim() -> dict:
        before = proc_status(os.getpid())["VmRSS"]
        libc.malloc_trim(0)
        return {"before_kb": before, "after_kb": proc_status(os.getpid())["VmRSS"]}

    run_server(app, "127.0.0.1", int(port), config.connections)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--as-server"]:
        serve_instrumented(*sys.argv[2:6])
    else:
        main()
