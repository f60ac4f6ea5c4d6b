"""Cold start of `avsearch query`: where the seconds and the memory of one query in a fresh process go.

Builds a 12-file index (6 pictures, 6 sounds; the real CLIP ViT-B/32 and CLAP HTSAT architectures with
random weights made the way the tests make them, tests/weights_factory.py, and a random audio-visual
bridge), and a second 12-file index of 6 pictures and 6 point clouds with a random ULIP-2 checkpoint
and 3D bridge for --pointcloud. Then runs `avsearch query` in a new process per query kind (--audio,
--image, --text, --pointcloud), `--repeat` times each, and prints per kind (medians):

  startup   process start to the command's start, plus exit (interpreter, CLI imports)
  setup     the command without the query's embedding and search (imports of the search engine,
            LanceDB and torch; opening the index)
  loads     each model load (encoder towers, bridges), imports they trigger included
  encode    the query's embedding without the loads (decoding, forward pass, bridge projection)
  search    FAISS search and result lookup, per route, summed
  total     wall time of the process, from outside
  CPU       user + system CPU time of the process (os.wait4): on a busy machine, closer than the wall
            time to what the query costs alone (imports are single-threaded; a forward pass may use
            several cores, whose times add up)
  imports   time spent importing modules (python -X importtime, one extra run per kind), and where
  peak RSS  maximum resident memory of the process (os.wait4; the indexes are built in another process,
            as Linux counts a forking parent's peak in its child's)

Stage times come from AVSEARCH_TIMINGS=1 (avsearch/timings.py); a checkout without that hook shows
only total, CPU, imports and peak RSS. The child processes run the avsearch of this checkout, or of
--checkout DIR (a before/after comparison).

    .venv/bin/python benchmarks/cold_start.py                  # every kind, 3 runs each
    .venv/bin/python benchmarks/cold_start.py --kinds audio,text --repeat 5 --workdir /tmp/cold
    mkdir /tmp/before && git archive HEAD~3 | tar -x -C /tmp/before
    .venv/bin/python benchmarks/cold_start.py --checkout /tmp/before
    .venv/bin/python benchmarks/cold_start.py --before /tmp/before --repeat 5   # before/after, same run

With --before DIR, every kind is measured with that checkout and with --checkout (default: this one) on
the same indexes, their runs interleaved, so both see the same machine; a ratio line follows. Before the
measured runs each checkout answers each kind once (`first`: a query that exports its towers for ONNX
Runtime, or converts a released bridge, pays for it there); the children share one cache folder per
checkout inside the work folder (AVSEARCH_CACHE), never the user's.
Numbers are machine-dependent; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/ helpers make the random weights and media
CHECKOUT = {"root": ROOT, "cache": None}  # whose avsearch the children run (--checkout), their cache folder

AVSEARCH = str(Path(sys.executable).with_name("avsearch"))
KINDS = ("audio", "image", "text", "pointcloud")
SETUP_FILE = "setup.json"  # what build() made, for the measuring process
TIMING_PREFIX = "avsearch-timing:"  # avsearch/timings.py; spelled out so an older checkout can be measured
# -X importtime lines: "import time: <self us> | <cumulative us> | <indent><module>"; indent 1 = top level
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)")


@dataclass
class Setup:
    weights: Path
    av_index: Path
    pc_index: Path | None
    queries: dict[str, list[str]]  # kind -> the query's arguments
    skipped: dict[str, str] = field(default_factory=dict)  # kind -> why it is not measured

    def save(self, path: Path) -> None:
        pc_index = str(self.pc_index) if self.pc_index else None
        fields = {"weights": str(self.weights), "av_index": str(self.av_index), "pc_index": pc_index}
        path.write_text(json.dumps(fields | {"queries": self.queries, "skipped": self.skipped}))

    @classmethod
    def load(cls, path: Path) -> Setup:
        d = json.loads(path.read_text())
        pc_index = Path(d["pc_index"]) if d["pc_index"] else None
        return cls(Path(d["weights"]), Path(d["av_index"]), pc_index, d["queries"], d["skipped"])


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float
    stages: dict[str, float]  # stage -> seconds (summed over its occurrences)
    stderr: str


# -- building the indexes ---------------------------------------------------------------------------------


def _index(media: Path, index: Path, bridges: list[Path], weights: Path) -> None:
    args = [AVSEARCH, "index", str(media), "--index-dir", str(index), "--weights-dir", str(weights), "--quiet"]
    for bridge in bridges:
        args += ["--bridge", str(bridge)]  # explicit: no dependence on default bridges
    done = subprocess.run(args, capture_output=True, text=True, env=_env())
    if done.returncode != 0:
        sys.exit(f"avsearch index failed:\n{done.stderr}")


def _pointcloud_index(work: Path, weights: Path) -> tuple[Path, Path]:
    """6 pictures + 6 point clouds, a random ULIP-2 checkpoint and a random CLIP-text <-> ULIP bridge."""
    from tests.pointcloud.conftest import random_ulip_state, save_ulip_checkpoint
    from tests.search.conftest import make_3d_bridge
    from tests.search.media_factory import write_cloud, write_image

    save_ulip_checkpoint(random_ulip_state(), weights)
    bridge = make_3d_bridge(work / "3d.safetensors")
    media = work / "media3d"
    media.mkdir()
    for i in range(6):
        write_image(media / f"img{i}.png", seed=100 + i)
    clouds = [write_cloud(media / f"shape{i}.npy", seed=i) for i in range(6)]
    index = work / "index3d"
    _index(media, index, [bridge], weights)
    return index, clouds[2]


def build(work: Path, kinds: list[str]) -> Setup:
    from avsearch.encoders.clap_model import MESHGRID_INDEXING
    from avsearch.encoders.upstream import quiet
    from tests.search.conftest import make_bridge
    from tests.search.media_factory import write_audio, write_image
    from tests.weights_factory import make_av_weights

    logging.disable(logging.WARNING)  # open_clip says the random model it makes has random weights
    with quiet(MESHGRID_INDEXING):
        weights = make_av_weights(work / "weights")
    logging.disable(logging.NOTSET)
    bridge = make_bridge(work / "av.safetensors")
    media = work / "media"
    images = [write_image(media / f"pictures/pic{i}.png", seed=i) for i in range(6)]
    sounds = [write_audio(media / f"sounds/clip{i}.wav", seed=i, seconds=10.0) for i in range(6)]  # 10 s clips
    _index(media, work / "index", [bridge], weights)
    setup = Setup(weights, work / "index", None, {})
    setup.queries["audio"] = ["--audio", str(sounds[1])]
    setup.queries["image"] = ["--image", str(images[1])]
    setup.queries["text"] = ["--text", "a dog barking in the rain"]
    if "pointcloud" in kinds:
        try:
            setup.pc_index, cloud = _pointcloud_index(work, weights)
            setup.queries["pointcloud"] = ["--pointcloud", str(cloud)]
        except ImportError as exc:  # the ULIP helpers live with the tests
            setup.skipped["pointcloud"] = f"cannot build the 3D index here ({exc})"
    return setup


def build_in_child(work: Path, kinds: list[str]) -> Setup:
    """build() in another process. This one never imports torch nor holds a model, because Linux carries
    a process's peak RSS over from the parent it was forked from: the queries' peak RSS is their own."""
    args = [sys.executable, __file__, "--build-only", "--workdir", str(work), "--kinds", ",".join(kinds)]
    done = subprocess.run([*args, "--checkout", str(CHECKOUT["root"])], env=_env())
    if done.returncode != 0:
        sys.exit(f"building the indexes failed (exit {done.returncode})")
    return Setup.load(work / SETUP_FILE)


# -- one cold query ---------------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    """The children's environment: offline, this checkout first on the path, timings only when asked."""
    env = {k: v for k, v in os.environ.items() if k != "AVSEARCH_TIMINGS"}
    env |= {"HF_HUB_OFFLINE": "1", "AVSEARCH_OFFLINE": "1", **extra}
    if CHECKOUT["cache"] is not None:
        env["AVSEARCH_CACHE"] = str(CHECKOUT["cache"])
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT["root"]), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _query_args(setup: Setup, kind: str) -> list[str]:
    index = setup.pc_index if kind == "pointcloud" else setup.av_index
    return ["query", *setup.queries[kind], "--index-dir", str(index), "--weights-dir", str(setup.weights), "--json"]


def run_query(setup: Setup, kind: str, importtime: bool = False) -> Run:
    """One `avsearch query` in a new process; wall time from outside, CPU time and peak RSS from wait4."""
    python = [sys.executable, "-X", "importtime"] if importtime else [sys.executable]
    cmd = [*python, AVSEARCH, *_query_args(setup, kind)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=_env(AVSEARCH_TIMINGS="1"))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"query {kind} failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    stages: dict[str, float] = {}
    for line in stderr.splitlines():
        if line.startswith(f"{TIMING_PREFIX} end "):
            name, seconds = line[len(TIMING_PREFIX) + 5 :].rsplit(" ", 1)
            stages[name] = stages.get(name, 0.0) + float(seconds)
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stages, stderr)


def import_shares(stderr: str) -> dict[str, float]:
    """Seconds of top-level imports per innermost open stage (from an -X importtime run's stderr)."""
    shares: dict[str, float] = {}
    open_stages: list[str] = []
    for line in stderr.splitlines():
        if line.startswith(f"{TIMING_PREFIX} start "):
            open_stages.append(line[len(TIMING_PREFIX) + 7 :])
        elif line.startswith(f"{TIMING_PREFIX} end ") and open_stages:
            open_stages.pop()
        elif (m := _IMPORT_LINE.match(line)) and len(m.group(3)) == 1:
            where = _bucket(open_stages[-1] if open_stages else "startup")
            shares[where] = shares.get(where, 0.0) + int(m.group(2)) / 1e6
    return shares


def _bucket(stage: str) -> str:
    return {"command": "setup", "embed query": "encode"}.get(stage, stage)


# -- report -----------------------------------------------------------------------------------------------


def breakdown(run: Run) -> dict[str, float]:
    """The report's columns from one run's stages (empty when the checkout has no timing hook)."""
    s = run.stages
    if "command" not in s:
        return {}
    loads = {k: v for k, v in s.items() if k.startswith("load ")}
    embed = s.get("embed query", 0.0)
    row = {"startup": run.wall - s["command"], "setup": s["command"] - embed - s.get("search", 0.0)}
    row |= loads
    row["encode"] = embed - sum(loads.values())
    row["search"] = s.get("search", 0.0)
    return row


def _median_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = dict.fromkeys(k for r in rows for k in r)
    return {k: statistics.median(r.get(k, 0.0) for r in rows) for k in keys}


def _short(stage: str) -> str:
    """'load clap-630k-fusion (audio)' -> 'clap (audio)'; 'load bridge' -> 'bridge'."""
    name = stage.removeprefix("load ")
    return re.sub(r"^(clip|clap|ulip2)[-\w]*", lambda m: m.group(1).removesuffix("2"), name)


def report(kind: str, runs: list[Run], imports: dict[str, float], out: list[str]) -> None:
    row = _median_rows([breakdown(r) for r in runs])
    wall = statistics.median(r.wall for r in runs)
    cpu = statistics.median(r.cpu for r in runs)
    rss = statistics.median(r.rss_mb for r in runs)
    total_imports = sum(imports.values())
    if row:
        loads = ", ".join(f"{_short(k)} {v:.2f}" for k, v in row.items() if k.startswith("load "))
        out.append(
            f"{kind:<10} {row['startup']:>7.2f} {row['setup']:>6.2f}  {loads:<34} "
            f"{row['encode']:>6.2f} {row['search']:>6.2f} {wall:>6.2f} {cpu:>5.2f} {total_imports:>7.2f} {rss:>7.0f}"
        )
        shares = sorted(imports.items(), key=lambda kv: -kv[1])
        where = ", ".join(f"{_short(k)} {v:.2f}" for k, v in shares if v >= 0.01)
        out.append(f"{'':<10} imports by stage: {where}")
    else:  # a checkout without avsearch/timings.py: what can be seen from outside
        blank = f"{'-':>7} {'-':>6}  {'-':<34} {'-':>6} {'-':>6}"
        out.append(f"{kind:<10} {blank} {wall:>6.2f} {cpu:>5.2f} {total_imports:>7.2f} {rss:>7.0f}")


def _use(root: Path, cache: Path) -> None:
    """The children from now on run the avsearch of `root`, with `cache` as their cache folder."""
    CHECKOUT["root"], CHECKOUT["cache"] = root, cache


def _info_lines(setup: Setup, checkouts: list[tuple[str, Path]], work: Path, repeat: int) -> list[str]:
    """`avsearch info` on the audio-visual index, per checkout: median wall of `repeat` fresh processes."""
    out = []
    for label, root in checkouts:
        _use(root, work / f"cache-{label or 'this'}")
        walls = []
        for _ in range(repeat):
            start = time.perf_counter()
            args = [AVSEARCH, "info", "--index-dir", str(setup.av_index)]
            done = subprocess.run(args, capture_output=True, env=_env())
            walls.append(time.perf_counter() - start)
            if done.returncode != 0:
                sys.exit(f"info failed: {done.stderr.decode(errors='replace')[-2000:]}")
        out.append(f"info {label:<6} {statistics.median(walls):>6.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: audio,image,text,pointcloud")
    parser.add_argument("--repeat", type=int, default=3, help="cold runs per kind (medians are printed)")
    parser.add_argument("--workdir", type=Path, help="keep the weights and indexes here (default: a temp folder)")
    parser.add_argument(
        "--checkout",
        type=Path,
        default=ROOT,
        help="run the avsearch of this checkout (e.g. `git archive` of the commit before a change), for a "
        "before/after comparison; the random weights and media are made by this one",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="also run this checkout (the commit before a change) on the same indexes, interleaved",
    )
    parser.add_argument("--reuse", action="store_true", help="--workdir holds an earlier run's indexes: use them")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)  # build_in_child's child
    args = parser.parse_args()
    CHECKOUT["root"] = args.checkout.resolve()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")

    if args.build_only:
        build(args.workdir, kinds).save(args.workdir / SETUP_FILE)
        return
    with tempfile.TemporaryDirectory(prefix="avsearch-cold-") as tmp:
        work = args.workdir or Path(tmp)
        if args.reuse and (work / SETUP_FILE).is_file():
            setup = Setup.load(work / SETUP_FILE)
            print(f"the indexes of an earlier run in {work} (--reuse)")
        else:
            if work.exists() and any(work.iterdir()):
                sys.exit(f"{work}: not empty; give an empty or new --workdir (or --reuse its indexes)")
            work.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            setup = build_in_child(work, kinds)
            print(f"built the indexes in {time.perf_counter() - t0:.1f} s (CPU only, {os.cpu_count()} cores)")
        print(f"avsearch of {CHECKOUT['root']}" + (f", before: {args.before}" if args.before else "") + "\n")
        lines = [
            f"{'kind':<10} {'startup':>7} {'setup':>6}  {'model loads (s)':<34} "
            f"{'encode':>6} {'search':>6} {'total':>6} {'CPU':>5} {'imports':>7} {'RSS MB':>7}"
        ]
        checkouts = [("", CHECKOUT["root"])]
        if args.before is not None:
            checkouts = [("before", args.before.resolve()), ("after", CHECKOUT["root"])]
        for kind in kinds:
            if kind in setup.skipped:
                lines.append(f"{kind:<10} skipped: {setup.skipped[kind]}")
                continue
            print(f"{kind}: {args.repeat} cold queries, then one under -X importtime", file=sys.stderr, flush=True)
            runs: dict[str, list[Run]] = {label: [] for label, _ in checkouts}
            first: dict[str, float] = {}
            for label, root in checkouts:
                _use(root, work / f"cache-{label or 'this'}")
                first[label] = run_query(setup, kind).wall
            for _ in range(args.repeat):
                for label, root in checkouts:
                    _use(root, work / f"cache-{label or 'this'}")
                    runs[label].append(run_query(setup, kind))
            walls = {}
            for label, root in checkouts:
                _use(root, work / f"cache-{label or 'this'}")
                imports = import_shares(run_query(setup, kind, importtime=True).stderr)
                name = f"{kind} {label}".strip()
                report(name, runs[label], imports, lines)
                walls[label] = statistics.median(r.wall for r in runs[label])
                lines.append(f"{'':<10} first query of this checkout: {first[label]:.2f} s")
            if args.before is not None:
                rss = {k: statistics.median(r.rss_mb for r in v) for k, v in runs.items()}
                lines.append(
                    f"{'':<10} after/before: wall {walls['after'] / walls['before']:.2f}x "
                    f"({walls['before']:.2f} -> {walls['after']:.2f} s), "
                    f"RSS {rss['before']:.0f} -> {rss['after']:.0f} MB"
                )
        if args.before is not None:
            lines.extend(_info_lines(setup, checkouts, work, args.repeat))
        print("\n".join(lines))
        print(
            "\nseconds, medians of",
            args.repeat,
            "cold runs; loads include the imports they trigger; imports: "
            "one more run under python -X importtime, its top-level imports by the stage they happened in.",
        )


if __name__ == "__main__":
    main()
