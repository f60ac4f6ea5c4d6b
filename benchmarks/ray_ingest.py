"""Ingest on Ray: files/s of `avsearch index --ray` on 1 and 2 local nodes (one CPU each), beside a
local run, and what the measured per-file cost means for 10M files.

The real CLIP ViT-B/32 and CLAP architectures with random weights (tests/weights_factory.py: the same
compute as the published weights), pictures 256 px and 5 s clips as in benchmarks/search.py. Each Ray
run starts its actors (Python, torch, the models) before its first batch: the run's files/s includes
that start-up.
The per-file cost is CPU time (all threads; models loaded; decode, forward, bridge, Lance write): the
actors' own on their batches, this process's for the local run, so a machine shared with other work
still measures it; the driver's share (walk, content hashes, FAISS build) is timed by stage.

    .venv/bin/python benchmarks/ray_ingest.py                 # 96 pictures + 32 clips, 1 then 2 nodes
    .venv/bin/python benchmarks/ray_ingest.py --images 24 --audio 8 --nodes 2   # quicker
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ helpers: media, weights, cluster

import torch  # noqa: E402

from avsearch.indexing.distributed import RayEmbedder, ray_connection  # noqa: E402
from avsearch.indexing.pipeline import IndexSummary, index_folder  # noqa: E402
from tests.indexing.ray_cluster import local_cluster  # noqa: E402
from tests.search.conftest import make_bridge  # noqa: E402
from tests.search.media_factory import write_audio, write_image  # noqa: E402
from tests.weights_factory import make_av_weights  # noqa: E402

DAY = 86_400.0
TARGET = 10_000_000


class Timeline:
    """The pipeline's progress protocol, timed: each stage's span in wall and in this process's CPU time."""

    def __init__(self) -> None:
        self.spans: dict[str, list[float]] = {}  # stage -> [wall start, cpu start, wall end, cpu end]

    def start(self, stage: str, total: int | None) -> None:
        self.spans[stage] = [time.perf_counter(), time.process_time(), math.nan, math.nan]

    def advance(self, stage: str, n: int = 1) -> None:
        return None

    def finish(self, stage: str) -> None:
        self.spans[stage][2:] = [time.perf_counter(), time.process_time()]

    def seconds(self, prefix: str, cpu: bool = False) -> float:
        """From the first start to the last finish of the stages named `prefix...` (a Ray run's embed
        stages run at once)."""
        spans = [v for s, v in self.spans.items() if s.startswith(prefix)]
        return max((v[2 + cpu] for v in spans), default=0.0) - min((v[cpu] for v in spans), default=0.0)


def report(label: str, summary: IndexSummary, seconds: float, line: Timeline, cost: float) -> dict[str, float]:
    """One run's line; cost: CPU seconds of embedding per file (models loaded)."""
    out = {"files/s": summary.added / seconds, "cost": cost, "files": summary.added, "hash": line.seconds("hash")}
    out["embed"] = line.seconds("embed")
    print(
        f"{label}: {summary.added} files in {seconds:.1f} s = {out['files/s']:.2f} files/s (embedding stage "
        f"{out['embed']:.1f} s, start-up included); {cost:.3f} CPU s per file; driver: walk+hash "
        f"{line.seconds('scan') + out['hash']:.2f} s, FAISS {line.seconds('index'):.2f} s"
        + (f"; Ray nodes used {len(summary.ray_nodes)}" if summary.ray_nodes else ""),
        flush=True,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--audio", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--nodes", type=int, nargs="*", default=[1, 2])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="avray-bench-") as tmp:
        base = Path(tmp)
        weights, bridge = make_av_weights(base / "weights"), make_bridge(base / "bridge.safetensors")
        root = base / "media"
        for i in range(args.images):
            write_image(root / "pics" / f"{i}.jpg", i, size=256)
        for i in range(args.audio):
            write_audio(root / "snd" / f"{i}.wav", i, seconds=5.0, rate=44100)
        common = {"bridges": bridge, "weights_dir": weights, "device": "cpu", "batch_size": args.batch_size}
        results: dict[object, dict[str, float]] = {}
        write_image(base / "warm" / "w.png", 0)
        write_audio(base / "warm" / "w.wav", 0)
        index_folder(base / "warm", base / "warm_index", **common)  # models loaded: the local run is throughput
        line, t = Timeline(), time.perf_counter()
        s = index_folder(root, base / "local", progress=line, **common)
        cpu = line.seconds("embed", cpu=True) / s.added
        results["local"] = report(f"local ({torch.get_num_threads()} threads)", s, time.perf_counter() - t, line, cpu)
        for nodes in args.nodes:
            with local_cluster(nodes=nodes) as address, ray_connection(address):
                line, t, embedder = Timeline(), time.perf_counter(), RayEmbedder()
                s = index_folder(root, base / f"ray{nodes}", progress=line, embed=embedder, **common)
                s.ray_nodes = dict(embedder.nodes)
                seconds = time.perf_counter() - t
                results[nodes] = report(
                    f"Ray, {nodes} node(s) x 1 CPU", s, seconds, line, embedder.cpu_s / embedder.files
                )
    project(results, max(args.nodes))


def project(results: dict, nodes: int) -> None:
    """The paragraph for the README: the measured per-file cost, scaled to 10M files."""
    best = results[nodes]
    cost = best["cost"]  # CPU seconds per file on an actor of one CPU
    cores = TARGET * cost / DAY
    startup = best["embed"] - best["files"] * cost / nodes  # the embedding stage beyond its compute
    driver = best["hash"] / best["files"]
    print(
        f"\nProjection: an actor of one CPU spends {cost:.3f} s per file (CLIP ViT-B/32 on a 256 px picture or "
        f"CLAP on a 5 s clip, decode and Lance write included; {nodes} nodes). 10M files in a day are "
        f"{TARGET / DAY:.0f} files/s: about {cores:,.0f} such CPU cores, e.g. {math.ceil(cores / 16)} nodes "
        f"of 16 cores, plus one start-up per run ({startup:.0f} s here: Python, torch and the models in "
        f"each actor). The driver's serial share is the walk and a whole-file content hash, "
        f"{1000 * driver:.2f} ms per file here (small files in the page cache): about "
        f"{TARGET * driver / 3600:.1f} h for 10M such files; for large files, one read of every byte on one "
        "machine. On GPU nodes the model stops being the cost and decoding becomes it (benchmarks/encoders.py).",
        flush=True,
    )


if __name__ == "__main__":
    main()
