"""Load benchmark of `avsearch serve`: concurrent clients on loopback against a 100k-item index.

Builds (or, with --reuse, reuses) under --work an index of a generated media folder (--pictures photo-sized
pictures and --sounds 4 s sounds, through `avsearch index FOLDER`) plus --rows synthetic vectors (60%
image.clip, 40% audio.clap: the modality-gap vectors of benchmarks/search.py, through `avsearch index
--embeddings`), starts `avsearch serve` in a subprocess on 127.0.0.1 (as users run it: configs/serve.toml,
ONNX Runtime towers, --warm) and measures end to end (HTTP + encode + search + JSON), each phase bounded by
--seconds and --max-requests:
  1. text -> pictures with 1 client, then --clients clients: throughput, the ratio, p50/p99, and the
     server's CPU time per request (from /proc: the cost of a query, whatever else runs on the machine);
  2. sound (5 s WAV) and picture uploads, --clients clients;
  3. a slow upload: text -> pictures p50 of --clients clients before, then while one more client trickles
     a picture upload's body for --trickle seconds (it must not delay them), and the upload's answer;
  4. (unless --skip-update) text -> pictures while `avsearch index --embeddings` adds --update-rows rows;
  5. (--soak MINUTES) the mixed load of benchmarks/serve_soak.py (searches, items, thumbnails, media,
     uploads) with the server's RSS sampled: start, after warm-up, end, peak.
--stages instead gives the CPU time per text -> pictures query by stage (encode, FAISS, the hits' rows,
the answer's JSON, the whole request), in this process through the server's app: less sensitive to
other jobs on the machine than throughput.
--towers instead compares, in this process, each query tower's CPU time per query on torch and on ONNX
Runtime (what configs/serve.toml's onnx_towers was chosen by).

Without --weights-dir (or AVSEARCH_WEIGHTS) the encoders are the REAL CLIP ViT-B/32 and CLAP HTSAT
architectures with RANDOM weights (tests/weights_factory.py; its CLAP text tower is a 1-layer RoBERTa):
the compute of the published towers, not their answers. The bridge is random too.

    nice -n 10 .venv/bin/python benchmarks/serve.py --reuse --skip-update --soak 10   # the issue-25 figures
    .venv/bin/python benchmarks/serve.py --rows 10000 --seconds 10 --reuse
    .venv/bin/python benchmarks/serve.py --reuse --towers
    .venv/bin/python benchmarks/serve.py --reuse --stages
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
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/ helpers (random weights in upstream layouts, bridges, media)
sys.path.insert(0, str(ROOT / "benchmarks"))
AVSEARCH = str(Path(sys.executable).with_name("avsearch"))
PHRASES = ["a dog barking", "rain on a roof", "a red car", "birds at dawn", "a crowded street", "a piano"]
CLIENT_TIMEOUT = 300  # s: a client waits this long for an answer (the first queries load models)


# -- the index and the server (benchmarks/serve_soak.py uses these too) ----------------------------------------


def write_picture(path: Path, seed: int, width: int = 960, height: int = 720) -> Path:
    """A photo-sized PNG or JPEG (gradients plus noise: decoding and scaling it is real work)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    ramp = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * rng.uniform(-120, 120, 3)
    pixels = np.clip(base + ramp + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG" if path.suffix == ".jpg" else "PNG")
    return path


def build(work: Path, weights: Path, pictures: int, sounds: int, rows: int, reuse: bool) -> tuple[Path, Path]:
    """(index, media folder): the folder indexed through the CLI, then `rows` vectors added."""
    from search import gap_vectors

    from tests.search.conftest import make_bridge
    from tests.search.media_factory import write_audio

    index, media, bridge = work / "index", (work / "media").resolve(), work / "bridge.safetensors"
    if reuse and (index / "manifest.json").is_file():
        print(f"reusing {index}")
        return index, media
    make_bridge(bridge)
    for i in range(pictures):
        write_picture(media / f"pictures/set{i % 4}/pic{i:03d}.{'jpg' if i % 2 else 'png'}", i)
    for i in range(sounds):
        write_audio(media / f"sounds/clip{i:03d}.wav", i, seconds=4.0, rate=48_000)
    t = time.perf_counter()
    cli("index", media, "--index-dir", index, "--bridge", bridge, "--weights-dir", weights)
    print(f"indexed {pictures} pictures and {sounds} sounds in {time.perf_counter() - t:.1f} s")
    if rows:
        emb = work / "emb"
        emb.mkdir(parents=True, exist_ok=True)
        n_image = int(rows * 0.6)
        for name, n, seed in (("image.clip", n_image, 1), ("audio.clap", rows - n_image, 2)):
            data, _, _ = gap_vectors(n, 1, 512, concepts=max(100, n // 100), seed=seed)
            np.save(emb / f"{name}.npy", data)
        t = time.perf_counter()
        cli("index", "--embeddings", emb, "--index-dir", index, "--weights-dir", weights)
        print(
            f"added {rows:,} vector rows ({n_image:,} image, {rows - n_image:,} audio) "
            f"in {time.perf_counter() - t:.1f} s"
        )
    return index, media


def index_options(ap: argparse.ArgumentParser, work: Path, rows: int) -> None:
    """The options of the benchmark index (build's arguments)."""
    ap.add_argument("--work", type=Path, default=work)
    ap.add_argument("--reuse", action="store_true", help="reuse the index under --work if it is there")
    ap.add_argument("--pictures", type=int, default=48)
    ap.add_argument("--sounds", type=int, default=24)
    ap.add_argument("--rows", type=int, default=rows, help="synthetic vector rows added to the index")
    ap.add_argument("--weights-dir", type=Path, default=os.environ.get("AVSEARCH_WEIGHTS"))


def prepare(args: argparse.Namespace, note: str = "") -> tuple[Path, Path, Path]:
    """(index, media folder, weights folder) of index_options' arguments, built unless reused."""
    args.work.mkdir(parents=True, exist_ok=True)
    weights = weights_for(args.work, args.weights_dir)
    print(f"machine: {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}; device cpu{note}")
    index, media = build(args.work, weights, args.pictures, args.sounds, args.rows, args.reuse)
    return index, media, weights


def cli(*args: object) -> None:
    cmd = [AVSEARCH, *map(str, args), "--device", "cpu", "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def weights_for(work: Path, given: Path | None) -> Path:
    """The weights folder: the one given, else random weights of the real architectures under `work`."""
    if given is not None:
        return given
    from tests.weights_factory import make_av_weights

    print("encoders: REAL CLIP ViT-B/32 and CLAP HTSAT architectures with RANDOM weights (no published weights)")
    return make_av_weights(work / "weights")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(cmd: list[object], port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a server command listening on `port` (output to `log`); back once /api/info answers."""
    proc = subprocess.Popen(list(map(str, cmd)), stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    return wait_for(proc, port, log)


def wait_for(proc: subprocess.Popen, port: int, log: Path, seconds: float = 300) -> subprocess.Popen:
    url = f"http://127.0.0.1:{port}/api/info"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()}")
        try:
            httpx.get(url, timeout=5).raise_for_status()
            return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the server did not answer in {seconds:.0f} s")


def serve(
    index: Path, weights: Path, log: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """`avsearch serve` on a free loopback port (warm: it loads the text towers before answering searches)."""
    port = free_port()
    cmd = [AVSEARCH, "serve", "--index-dir", index, "--port", port, "--weights-dir", weights, "--device", "cpu"]
    return launch(cmd, port, log, {**os.environ, **(extra_env or {})}), f"http://127.0.0.1:{port}"


def warmed(log: Path, seconds: float = 900) -> str:
    """The server's line saying its warm start is done (it prints one), waited for."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = [line for line in log.read_text().splitlines() if "models loaded in" in line or "warm-up" in line]
        if done:
            return done[0].strip()
        time.sleep(0.5)
    return f"no end of the warm start in {seconds:.0f} s"


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- clients -----------------------------------------------------------------------------------------------------


def run_clients(
    clients: int,
    seconds: float,
    max_requests: int,
    request: Callable[[httpx.Client, int], httpx.Response],
    until: Callable[[], bool] | None = None,
    pid: int | None = None,
) -> dict:
    """`clients` threads calling request(client, i) until the time, the request budget or until() ends."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    counter = iter(range(max_requests))

    def worker() -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
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

    cpu0 = cpu_seconds(pid) if pid else None
    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - started
    lat = np.array(latencies or [np.nan])
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0][:200] if errors else None,
        "seconds": wall,
        "throughput": len(latencies) / wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "server_cpu_ms": (cpu_seconds(pid) - cpu0) * 1e3 / max(1, len(latencies)) if pid else float("nan"),
        "load": os.getloadavg()[0],
    }


def show(name: str, s: dict) -> None:
    err = f", {s['errors']} errors (first: {s['first_error']})" if s["errors"] else ""
    print(
        f"{name:<44} {s['requests']:>5} requests in {s['seconds']:5.1f} s = {s['throughput']:6.1f} req/s | "
        f"p50 {s['p50']:7.1f} ms  p99 {s['p99']:7.1f} ms | server CPU {s['server_cpu_ms']:6.1f} ms/request | "
        f"load {s['load']:.1f}{err}",
        flush=True,
    )


def multipart(fields: dict[str, str], name: str, data: bytes, boundary: str = "avsearch-bench") -> tuple[bytes, str]:
    """A multipart/form-data body (the `file` field last) and its content type."""
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
    head += "Content-Type: application/octet-stream\r\n\r\n"
    body = "".join(parts).encode() + head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def trickle_upload(port: int, data: bytes, seconds: float, pieces: int = 200) -> dict:
    """POST a picture search whose body arrives in `pieces` over `seconds` (a slow client); its status."""
    body, kind = multipart({"k": "10", "target": "image"}, "slow.png", data)
    head = (
        f"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(head.encode())
        step = -(-len(body) // pieces)
        for i in range(0, len(body), step):
            sock.sendall(body[i : i + step])
            time.sleep(seconds / pieces)
        sent = time.perf_counter() - started
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "no answer"
    return {"status": status, "sent_in": sent, "answered_in": time.perf_counter() - started}


def slow_upload_phase(
    url: str, pid: int, clients: int, seconds: float, max_requests: int, trickle: float, png: bytes, request
) -> None:  # noqa: ANN001, E501
    """Text -> pictures p50 before and while one client trickles an upload's body for `trickle` seconds."""
    port = int(url.rpartition(":")[2])
    before = run_clients(clients, seconds, max_requests, request, pid=pid)
    show(f"text->image, {clients} clients, before", before)
    out: dict = {}
    slow = threading.Thread(target=lambda: out.update(trickle_upload(port, png, trickle)))
    slow.start()
    during = run_clients(clients, 600, 10 * max_requests, request, until=lambda: not slow.is_alive(), pid=pid)
    slow.join()
    show(f"text->image, {clients} clients, during a slow upload", during)
    print(
        f"slow upload: body sent over {out.get('sent_in', float('nan')):.1f} s, answered {out.get('status')} after "
        f"{out.get('answered_in', float('nan')):.1f} s; p50 during / before = {during['p50'] / before['p50']:.2f} "
        f"(goal: within 1.20)",
        flush=True,
    )


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
    show(f"text->image, {clients} clients, during index run", stats)
    after = _image_files(url)
    print(
        f"index run (+{args.update_rows:,} image rows) took {took:.1f} s, exit {run.wait()}; "
        f"server's image count {before:,} -> {after:,} (picked up: {after == before + args.update_rows})"
    )
    show("text->image, 1 client, after the run", run_clients(1, args.seconds, max_requests, request))


def _image_files(url: str) -> int:
    info = httpx.get(url + "/api/info", timeout=60).json()
    return next(m["files"] for m in info["modalities"] if m["modality"] == "image")


# -- the towers, in this process -------------------------------------------------------------------------------


def towers(index: Path, weights: Path, queries: dict[str, Path], n: int = 8) -> None:
    """CPU time per query of each query tower the index uses, on torch and on ONNX Runtime (one thread
    each, as a search in the server on 2 cores): thread CPU time, so other jobs on the machine count little."""
    from avsearch.encoders import onnx_towers
    from avsearch.encoders.registry import get_spec, load_encoder
    from avsearch.serve.run import set_search_threads
    from avsearch.store.manifest import load_manifest

    set_search_threads(1)
    used = {entry.encoder for entry in load_manifest(index).modalities.values()}
    for name in sorted(used):
        spec = get_spec(name)
        for tower in spec.modalities:
            if not onnx_towers.supported(spec, (tower,)) or (tower != "text" and tower not in queries):
                continue
            on_torch = load_encoder(name, (tower,), weights, "cpu")
            onnx_towers.export_after_load(on_torch, spec, (tower,), weights)
            on_onnx = onnx_towers.load_onnx_encoder(spec, (tower,), weights, "cpu")
            for runtime, enc in (("torch", on_torch), ("ONNX Runtime", on_onnx)):
                if enc is None:
                    print(f"{name}:{tower} on {runtime}: no faithful export")
                    continue
                if tower == "text":
                    call = lambda i, e=enc: e.encode_text([f"{PHRASES[i % 6]} {i}"])  # noqa: E731
                else:
                    call = lambda i, e=enc, t=tower: e.encode_files(t, [queries[t]])  # noqa: E731
                call(0)
                times = []
                for i in range(1, n + 1):
                    t = time.thread_time()
                    call(i)
                    times.append(time.thread_time() - t)
                print(
                    f"{name}:{tower:<6} {runtime:<13} CPU {np.median(times) * 1e3:7.1f} ms/query "
                    f"(load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )


# -- CPU per stage, in this process ------------------------------------------------------------------------------

STAGES = {  # stage -> (module, class or None, function): what a text -> pictures search spends its CPU in
    "encode the text": ("avsearch.encoders.onnx_clip", "OnnxClipEncoder", "encode_text"),
    "encode the text (torch)": ("avsearch.encoders.clip", "ClipEncoder", "encode_text"),
    "FAISS search": ("avsearch.search.engine", "SearchEngine", "_search_ann"),
    "hits' rows (file_stats)": ("avsearch.store.tables", "MediaStore", ("lookup", "file_stats")),
    "table version/count/columns": ("avsearch.store.tables", "MediaStore", ("version", "count", "has_moments")),
    "search (engine)": ("avsearch.search.engine", "SearchEngine", "search_text"),
    "answer JSON": ("avsearch.serve.app", None, "_answer"),
}


def stages(index: Path, weights: Path, n: int = 60) -> None:
    """CPU time per text -> pictures query by stage, through the server's app in this process (FastAPI's
    test client, one query at a time, threads as the server sets them): process CPU time around each
    stage, so the threads a stage uses count (Lance scans, FAISS) and other jobs on the machine little."""
    import collections
    import functools
    import importlib

    from fastapi.testclient import TestClient

    from avsearch.serve.app import create_app
    from avsearch.serve.config import load_serve_config
    from avsearch.serve.threads import set_search_threads

    set_search_threads(load_serve_config().search.resolved()[1])
    app = create_app(index, weights_dir=weights, device="cpu")
    app.state.live.warm()
    spent: collections.Counter[str] = collections.Counter()

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        @functools.wraps(fn)
        def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - started

        return run

    for name, (module, cls, functions) in STAGES.items():
        owner = importlib.import_module(module)
        owner = getattr(owner, cls) if cls else owner
        for fn in (functions,) if isinstance(functions, str) else functions:
            setattr(owner, fn, timed(name, getattr(owner, fn)))
    with TestClient(app) as client:

        def query(i: int) -> None:
            params = {"text": f"{PHRASES[i % 6]} {i}", "k": 10, "target": "image"}
            client.get("/api/search", params=params).raise_for_status()

        for i in range(5):
            query(i)
        spent.clear()
        started = time.process_time()
        for i in range(n):
            query(i)
        total = time.process_time() - started
    print(f"text->image CPU per query by stage ({n} queries, load {os.getloadavg()[0]:.1f}):")
    print(f"  {'the request (with the test client)':<36} {total * 1e3 / n:6.1f} ms")
    for name in STAGES:
        if spent[name]:
            print(f"  {name:<36} {spent[name] * 1e3 / n:6.1f} ms")


# -- the run -------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    index_options(ap, ROOT / "runs" / "serve-bench", 100_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0, help="most seconds per phase")
    ap.add_argument("--max-requests", type=int, default=2000, help="most requests per phase")
    ap.add_argument("--trickle", type=float, default=20.0, help="seconds the slow upload takes to send its body")
    ap.add_argument("--update-rows", type=int, default=10_000)
    ap.add_argument("--skip-update", action="store_true", help="leave out phase 4 (the index run)")
    ap.add_argument("--soak", type=float, default=0.0, metavar="MINUTES", help="then the mixed load, RSS sampled")
    ap.add_argument("--soak-clients", type=int, default=8)
    ap.add_argument("--towers", action="store_true", help="only compare the towers on torch and ONNX Runtime")
    ap.add_argument("--stages", action="store_true", help="only the CPU per text query by stage, in this process")
    args = ap.parse_args()
    from tests.search.media_factory import write_audio

    index, media, weights = prepare(args)
    clips = [write_audio(args.work / "clips" / f"q{i}.wav", i, seconds=5.0, rate=48_000).read_bytes() for i in range(4)]
    picture = write_picture(args.work / "clips" / "q.png", 5)
    if args.towers:
        towers(index, weights, {"image": picture, "audio": args.work / "clips" / "q0.wav"})
        return
    if args.stages:
        stages(index, weights)
        return
    png = picture.read_bytes()
    t = time.perf_counter()
    proc, url = serve(index, weights, args.work / "server.log")
    print(f"server answering after {time.perf_counter() - t:.1f} s; {warmed(args.work / 'server.log')}", flush=True)
    try:

        def text(target: str):  # noqa: ANN202
            return lambda c, i: c.get(
                url + "/api/search", params={"text": f"{PHRASES[i % 6]} {i}", "k": 10, "target": target}
            )

        def upload(name: str, data: list[bytes]):  # noqa: ANN202
            return lambda c, i: c.post(
                url + "/api/search", files={"file": (name, data[i % len(data)])}, data={"k": "10"}
            )

        audio, image = upload("q.wav", clips), upload("q.png", [png])
        with httpx.Client(timeout=CLIENT_TIMEOUT) as c:
            for name, call in (("text->all", text("all")), ("audio->all", audio), ("picture->all", image)):
                t = time.perf_counter()
                call(c, 0).raise_for_status()
                print(f"first {name} query: {time.perf_counter() - t:.2f} s")
            for m in c.get(url + "/api/info").json()["modalities"]:
                print(f"index: {m['modality']} {m['files']:,} rows")
        n, s, m, pid = args.clients, args.seconds, args.max_requests, proc.pid
        one = run_clients(1, s, m, text("image"), pid=pid)
        show("text->image, 1 client", one)
        many = run_clients(n, s, m, text("image"), pid=pid)
        show(f"text->image, {n} clients", many)
        print(
            f"text->image throughput {n} clients / 1 client = {many['throughput'] / one['throughput']:.2f}x "
            f"(goal >= 1.7 on 2 cores); p99 with {n} clients {many['p99']:.0f} ms (goal < 300) at load "
            f"{many['load']:.1f}",
            flush=True,
        )
        show(f"audio upload (5 s WAV)->all, {n} clients", run_clients(n, s, m, audio, pid=pid))
        show(f"picture upload (960x720 PNG)->all, {n} clients", run_clients(n, s, m, image, pid=pid))
        slow_upload_phase(url, pid, n, s, m, args.trickle, png, text("image"))
        if not args.skip_update:
            update_during(args, url, index, weights, n, m, text("image"))
        if args.soak:
            from serve_soak import soak

            soak(url, proc, media, args.work, args.soak_clients, args.soak * 60)
    finally:
        stop(proc)
    log = (args.work / "server.log").read_text().splitlines()
    print(f"server log: {len(log)} lines; load avg at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
