"""Load benchmark of `avsearch serve`: concurrent clients on loopback against a 100k-item index.

Builds (or, with --reuse, reuses) an index of synthetic vectors through `avsearch index --embeddings`
(60% image.clip, 40% audio.clap rows, the modality-gap vectors of benchmarks/search.py), starts
`avsearch serve` in a subprocess on 127.0.0.1, and measures end to end (HTTP + encode + search + JSON):
  1. one client, text queries (sequential: the warm latency a user sees);
  2. --clients concurrent clients, text queries;
  3. --clients concurrent clients, audio uploads (5 s WAV clips, CLAP's audio tower);
  4. --clients concurrent clients, text queries while `avsearch index --embeddings` adds --update-rows
     image rows to the same index (then checks that the server picked up the new commit).
Each phase is bounded by --seconds and --max-requests. Without --weights-dir (or AVSEARCH_WEIGHTS) the
encoders are the REAL CLIP ViT-B/32 and CLAP HTSAT architectures with RANDOM weights (tests/weights_factory
.py; its CLAP text tower is a 1-layer RoBERTa, so text -> audio costs less than with the real weights): the
compute of the published image/audio/CLIP-text towers, not their answers. The bridge is random too.

    .venv/bin/python benchmarks/serve.py                       # 100k rows, 4 clients, 20 s a phase
    .venv/bin/python benchmarks/serve.py --rows 10000 --seconds 10 --reuse
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/ helpers (random weights in upstream layouts, bridges, media)
sys.path.insert(0, str(ROOT / "benchmarks"))
AVSEARCH = str(Path(sys.executable).with_name("avsearch"))
PHRASES = ["a dog barking", "rain on a roof", "a red car", "birds at dawn", "a crowded street", "a piano"]


def build(work: Path, rows: int, weights: Path, reuse: bool) -> tuple[Path, Path]:
    """The index (built through the CLI) and the bridge; reused when --reuse and present."""
    from search import gap_vectors

    from tests.search.conftest import make_bridge

    index, emb, bridge = work / "index", work / "emb", work / "bridge.safetensors"
    if reuse and (index / "manifest.json").is_file():
        print(f"reusing {index}")
        return index, bridge
    make_bridge(bridge)
    emb.mkdir(parents=True, exist_ok=True)
    n_image = int(rows * 0.6)
    for name, n, seed in (("image.clip", n_image, 1), ("audio.clap", rows - n_image, 2)):
        data, _, _ = gap_vectors(n, 1, 512, concepts=max(100, n // 100), seed=seed)
        np.save(emb / f"{name}.npy", data)
    t = time.perf_counter()
    _cli("index", "--embeddings", emb, "--index-dir", index, "--bridge", bridge, "--weights-dir", weights)
    print(f"built {rows:,} rows ({n_image:,} image, {rows - n_image:,} audio) in {time.perf_counter() - t:.1f} s")
    return index, bridge


def _cli(*args: object) -> None:
    cmd = [AVSEARCH, *map(str, args), "--device", "cpu", "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path, weights: Path, log: Path, threads: int | None) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [AVSEARCH, "serve", "--index-dir", index, "--port", port, "--weights-dir", weights, "--device", "cpu"]
    env = dict(os.environ)
    if threads is not None:  # torch's and FAISS's OpenMP threads in the server process
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()}")
        try:
            httpx.get(url + "/api/info", timeout=5).raise_for_status()
            return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not answer in 120 s")


def run_clients(clients: int, seconds: float, max_requests: int, request, until=None) -> dict:  # noqa: ANN001
    """`clients` threads calling request(client, i) until the time, the request budget or until() ends."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    counter = iter(range(max_requests))

    def worker() -> None:
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < deadline and (until is None or not until()):
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t = time.perf_counter()
                r = request(client, i)
                dt = (time.perf_counter() - t) * 1e3
                with lock:
                    (latencies if r.status_code == 200 else errors).append(dt if r.status_code == 200 else r.text)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - started
    lat = np.array(latencies or [np.nan])
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0][:200] if errors else None,
        "seconds": wall,
        "throughput": len(latencies) / wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
    }


def _show(name: str, s: dict) -> None:
    err = f", {s['errors']} errors (first: {s['first_error']})" if s["errors"] else ""
    print(
        f"{name:<44} {s['requests']:>5} requests in {s['seconds']:5.1f} s = {s['throughput']:6.1f} req/s | "
        f"p50 {s['p50']:7.1f} ms  p99 {s['p99']:7.1f} ms | load avg {os.getloadavg()[0]:.1f}{err}",
        flush=True,
    )


def breakdown(index: Path, weights: Path, clips: list[bytes], threads: int | None, n: int = 30) -> None:
    """The same queries in this process, no HTTP: encoder time and search time apart (medians)."""
    import tempfile

    import torch

    if threads is not None:
        torch.set_num_threads(threads)

    from avsearch.serve.live import LiveIndex

    live = LiveIndex(index, weights_dir=weights, device="cpu")
    engine = live.current().engine
    clip_enc = engine.models.encoder(engine.manifest.modalities["image"].encoder, "text")
    clap_enc = engine.models.encoder(engine.manifest.modalities["audio"].encoder, "audio")
    with tempfile.TemporaryDirectory() as tmp:
        wavs = [Path(tmp) / f"q{i}" for i in range(len(clips))]
        for wav, data in zip(wavs, clips, strict=True):
            wav.write_bytes(data)
        cases = {  # consecutive queries differ: the engine reuses the last query's vector
            "CLIP text encode": lambda i: clip_enc.encode_text([PHRASES[i % 6]]),
            "text->image search_text (encode+search)": lambda i: engine.search_text(PHRASES[i % 6], "image", 10),
            "CLAP audio encode (5 s clip)": lambda i: clap_enc.encode_files("audio", [wavs[i % len(wavs)]]),
            "audio->all search_file (encode+search)": lambda i: engine.search_file(wavs[i % len(wavs)], "audio"),
        }
        for name, call in cases.items():
            call(0)
            times = []
            for i in range(n if "audio" not in name else max(3, n // 5)):
                t = time.perf_counter()
                call(i + 1)
                times.append((time.perf_counter() - t) * 1e3)
            print(f"in-process {name:<40} p50 {np.median(times):7.1f} ms (load avg {os.getloadavg()[0]:.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "serve-bench")
    ap.add_argument("--reuse", action="store_true", help="reuse the index under --work if it is there")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0, help="most seconds per phase")
    ap.add_argument("--max-requests", type=int, default=2000, help="most requests per phase")
    ap.add_argument("--update-rows", type=int, default=10_000)
    ap.add_argument("--skip-update", action="store_true", help="leave out phase 4 (the index run)")
    ap.add_argument("--server-threads", type=int, default=None, help="OMP_NUM_THREADS of the server (default: unset)")
    ap.add_argument("--weights-dir", type=Path, default=os.environ.get("AVSEARCH_WEIGHTS"))
    args = ap.parse_args()
    from tests.search.media_factory import write_audio

    args.work.mkdir(parents=True, exist_ok=True)
    weights = args.weights_dir
    if weights is None:
        from tests.weights_factory import make_av_weights

        weights = make_av_weights(args.work / "weights")
        print(
            "encoders: REAL CLIP ViT-B/32 and CLAP HTSAT architectures with RANDOM weights (no published weights here)"
        )
    threads = args.server_threads or "default"
    print(f"machine: {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}; server threads {threads}; device cpu")
    index, _ = build(args.work, args.rows, weights, args.reuse)
    clips = [write_audio(args.work / "clips" / f"q{i}.wav", i, seconds=5.0, rate=48_000).read_bytes() for i in range(4)]
    proc, url = start_server(index, weights, args.work / "server.log", args.server_threads)
    try:

        def text(target: str):  # noqa: ANN202
            return lambda c, i: c.get(url + "/api/search", params={"text": PHRASES[i % 6], "k": 10, "target": target})

        def audio(c: httpx.Client, i: int) -> httpx.Response:
            return c.post(url + "/api/search", files={"file": ("q.wav", clips[i % 4])}, data={"k": "10"})

        with httpx.Client(timeout=300) as c:
            for name, call in (("text->all", text("all")), ("audio->all", audio)):
                t = time.perf_counter()
                r = call(c, 0)
                r.raise_for_status()
                print(f"cold first {name} query (loads its models): {time.perf_counter() - t:.2f} s")
            for m in c.get(url + "/api/info").json()["modalities"]:
                kinds = {col: p["kind"] for col, p in m["indexes"].items()}
                print(f"index: {m['modality']} {m['files']:,} rows, FAISS {kinds}")
        n, s, m = args.clients, args.seconds, args.max_requests
        _show("text->image, 1 client", run_clients(1, s, m, text("image")))
        _show("text->all (image+audio), 1 client", run_clients(1, s, m, text("all")))
        _show(f"text->image, {n} clients", run_clients(n, s, m, text("image")))
        _show(f"audio upload (5 s WAV)->all, {n} clients", run_clients(n, s, m, audio))
        if not args.skip_update:
            update_during(args, url, index, weights, n, m, text("image"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    breakdown(index, weights, clips, args.server_threads)
    log = (args.work / "server.log").read_text().splitlines()
    print(f"server log: {len(log)} lines ({sum('FAISS index' in x for x in log)} 'FAISS index older than its table')")


def update_during(args, url, index, weights, clients, max_requests, request) -> None:  # noqa: ANN001
    """Text clients while `avsearch index --embeddings` adds rows to the served index."""
    from search import gap_vectors

    extra = args.work / f"update-{time.time_ns()}"
    extra.mkdir()
    data, _, _ = gap_vectors(args.update_rows, 1, 512, concepts=100, seed=7)
    np.save(extra / "image.clip.npy", data)
    rows = "\n".join(json.dumps({"source": f"update/{extra.name}/{i}"}) for i in range(len(data)))
    (extra / "image.clip.rows.jsonl").write_text(rows + "\n")
    before = _image_files(url)
    cmd = [AVSEARCH, "index", "--embeddings", extra, "--index-dir", index, "--weights-dir", weights]
    t = time.perf_counter()
    run = subprocess.Popen([*map(str, cmd), "--device", "cpu", "--quiet"], stdout=subprocess.DEVNULL)
    stats = run_clients(clients, 600, 10 * max_requests, request, until=lambda: run.poll() is not None)
    took = time.perf_counter() - t
    time.sleep(1.0)  # the server looks for a new commit at most every 0.5 s
    _show(f"text->image, {clients} clients, during index run", stats)
    after = _image_files(url)
    print(
        f"index run (+{args.update_rows:,} image rows) took {took:.1f} s, exit {run.wait()}; "
        f"server's image count {before:,} -> {after:,} (picked up: {after == before + args.update_rows})"
    )
    _show("text->image, 1 client, after the run", run_clients(1, args.seconds, max_requests, request))


def _image_files(url: str) -> int:
    info = httpx.get(url + "/api/info", timeout=60).json()
    return next(m["files"] for m in info["modalities"] if m["modality"] == "image")


if __name__ == "__main__":
    main()
