"""Cold start of `avsearch`: where the seconds and the memory of one command in a fresh process go.

Builds one index as issue 25 sets it: all three modalities (pictures, sounds, point clouds) with both
released bridges (audio <-> image and 3D <-> image: random weights of the real architectures, made the way
the tests make them, tests/weights_factory.py), 10,000 rows: a few real files (indexed with the real CLIP,
CLAP and ULIP-2 architectures, so queries by file and by id find files) and the bulk from generated
vectors (`avsearch index --embeddings`, the same tables, bridges and FAISS builds without decoding).
Then runs each route in a new process, `--repeat` times (median; default 5), with the default
`--target all`: `query --text`, `--image`, `--audio` (a 10 s clip), `--pointcloud`, `--id`, and
`avsearch info`, and prints per route (medians):

  startup   process start to the command's start, plus exit (interpreter, CLI imports)
  setup     the command without the query's embedding and search (imports of the search engine and
            the tables; opening the index)
  loads     each model load (encoder towers, bridges), imports they trigger included
  encode    the query's embedding without the loads (decoding, forward pass, bridge projection)
  search    the searches and result lookups, per route, summed
  total     wall time of the process, from outside
  CPU       user + system CPU time of the process (os.wait4): on a busy machine, closer than the wall
            time to what the command costs alone (imports are single-threaded; a forward pass may use
            several cores, whose times add up)
  imports   time spent importing modules (python -X importtime, one extra run per route), and where
  peak RSS  maximum resident memory of the process (os.wait4; the index is built in another process,
            as Linux counts a forking parent's peak in its child's)

Stage times come from AVSEARCH_TIMINGS=1 (avsearch/timings.py); a checkout without that hook shows
only total, CPU, imports and peak RSS. The child processes run the avsearch of this checkout, or of
--checkout DIR.

    .venv/bin/python benchmarks/cold_start.py                  # every route, 5 runs each
    .venv/bin/python benchmarks/cold_start.py --kinds text,image,info --repeat 3 --workdir /tmp/cold
    mkdir /tmp/before && git archive HEAD~3 | tar -x -C /tmp/before
    .venv/bin/python benchmarks/cold_start.py --before /tmp/before --workdir /tmp/cold   # before/after
    .venv/bin/python benchmarks/cold_start.py --before /tmp/before --workdir /tmp/cold --reuse

With --before DIR, every route is measured with that checkout and with --checkout (default: this one) on
the same index, their runs interleaved, so both see the same machine; a ratio line follows. Before the
measured runs each checkout answers each route once (`first`: a query that exports its towers for ONNX
Runtime, or converts a released bridge, pays for it there); the children share one cache folder inside
the work folder (AVSEARCH_CACHE, never the user's; an export's name carries its export version, so two
checkouts share an export only where they would make the same one). Numbers are machine-dependent;
nothing here asserts a time.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/ helpers make the random weights and media
CHECKOUT = {"root": ROOT, "cache": None}  # whose avsearch the children run (--checkout), their cache folder

AVSEARCH = str(Path(sys.executable).with_name("avsearch"))
KINDS = ("text", "image", "audio", "pointcloud", "id", "info")
ROWS = 10_000  # rows of the index, all modalities together (issue 25)
SHARE = {"image": 0.4, "audio": 0.3, "pointcloud": 0.3}  # of the generated rows
SETUP_FILE = "setup.json"  # what build() made, for the measuring process
TIMING_PREFIX = "avsearch-timing:"  # avsearch/timings.py; spelled out so an older checkout can be measured
# -X importtime lines: "import time: <self us> | <cumulative us> | <indent><module>"; indent 1 = top level
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)")


@dataclass
class Setup:
    weights: Path
    index: Path
    queries: dict[str, list[str]]  # route -> the command's arguments after `avsearch`
    rows: int = 0  # rows of the index

    def save(self, path: Path) -> None:
        fields = {"weights": str(self.weights), "index": str(self.index), "rows": self.rows}
        path.write_text(json.dumps(fields | {"queries": self.queries}))

    @classmethod
    def load(cls, path: Path) -> Setup:
        d = json.loads(path.read_text())
        return cls(Path(d["weights"]), Path(d["index"]), d["queries"], d.get("rows", 0))


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float
    stages: dict[str, float]  # stage -> seconds (summed over its occurrences)
    stderr: str


# -- building the index ----------------------------------------------------------------------------------


def _avsearch(*args: str) -> None:
    done = subprocess.run([AVSEARCH, *args], capture_output=True, text=True, env=_env())
    if done.returncode != 0:
        sys.exit(f"avsearch {args[0]} failed:\n{done.stderr[-3000:]}")


def _generated_vectors(index: Path, folder: Path, rows: int, seed: int = 25) -> None:
    """`{modality}.{space}.npy` of `rows` random unit vectors in all, shared as SHARE says, in the widths
    the index's manifest gives, with ids gen-<modality>-<n> (`avsearch index --embeddings` reads them)."""
    manifest = json.loads((index / "manifest.json").read_text())
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for modality, entry in manifest["modalities"].items():
        n = int(rows * SHARE.get(modality, 0))
        if not n:
            continue
        x = rng.standard_normal((n, entry["native_dim"])).astype(np.float32)
        space = entry["space"]
        np.save(folder / f"{modality}.{space}.npy", x / np.linalg.norm(x, axis=1, keepdims=True))
        ids = "".join(json.dumps({"source": f"gen-{modality}-{i}"}) + "\n" for i in range(n))
        (folder / f"{modality}.{space}.rows.jsonl").write_text(ids)


def build(work: Path, kinds: list[str]) -> Setup:
    from avsearch.encoders.clap_model import MESHGRID_INDEXING
    from avsearch.encoders.upstream import quiet
    from tests.pointcloud.conftest import random_ulip_state, save_ulip_checkpoint
    from tests.search.conftest import make_3d_bridge, make_bridge
    from tests.search.media_factory import write_audio, write_cloud, write_image
    from tests.weights_factory import make_av_weights

    logging.disable(logging.WARNING)  # open_clip says the random model it makes has random weights
    with quiet(MESHGRID_INDEXING):
        weights = make_av_weights(work / "weights")
    logging.disable(logging.NOTSET)
    save_ulip_checkpoint(random_ulip_state(), weights)
    bridges = [make_bridge(work / "av.safetensors"), make_3d_bridge(work / "3d.safetensors")]
    media = work / "media"
    images = [write_image(media / f"pictures/pic{i}.png", seed=i, size=224) for i in range(4)]
    sounds = [write_audio(media / f"sounds/clip{i}.wav", seed=i, seconds=10.0) for i in range(3)]  # 10 s clips
    clouds = [write_cloud(media / f"shapes/shape{i}.npy", seed=i) for i in range(3)]
    index = work / "index"
    where = ["--index-dir", str(index), "--weights-dir", str(weights)]
    # the real files first (explicit bridges: no dependence on default bridges), then the bulk
    _avsearch("index", str(media), *where, *[a for b in bridges for a in ("--bridge", str(b))], "--quiet")
    _generated_vectors(index, work / "vectors", ROWS - len(images) - len(sounds) - len(clouds))
    _avsearch("index", "--embeddings", str(work / "vectors"), "--index-dir", str(index), "--quiet")
    queries = {
        "text": ["query", "--text", "a dog barking in the rain"],
        "image": ["query", "--image", str(images[1])],
        "audio": ["query", "--audio", str(sounds[1])],
        "pointcloud": ["query", "--pointcloud", str(clouds[1])],
        "id": ["query", "--id", str(images[2].absolute())],
    }
    queries = {k: [*q, *where, "--json"] for k, q in queries.items()}
    queries["info"] = ["info", "--index-dir", str(index)]
    return Setup(weights, index, queries, ROWS)


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
    return setup.queries[kind]


def run_query(setup: Setup, kind: str, importtime: bool = False) -> Run:
    """One `avsearch` command in a new process; wall time from outside, CPU time and peak RSS from wait4."""
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
        sys.exit(f"{kind} failed (exit {proc.returncode}):\n{stderr[-3000:]}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated routes: {','.join(KINDS)}")
    parser.add_argument("--repeat", type=int, default=5, help="cold runs per route (medians are printed)")
    parser.add_argument("--workdir", type=Path, help="keep the weights and the index here (default: a temp folder)")
    parser.add_argument(
        "--checkout",
        type=Path,
        default=ROOT,
        help="run the avsearch of this checkout; the random weights and media are made by this one",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="also run this checkout (e.g. `git archive` of the commit before a change) on the same index, "
        "interleaved with --checkout, and print the ratios",
    )
    parser.add_argument("--reuse", action="store_true", help="--workdir holds an earlier run's index: use it")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)  # build_in_child's child
    args = parser.parse_args()
    CHECKOUT["root"] = args.checkout.resolve()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown routes {unknown}; choose from {', '.join(KINDS)}")

    if args.build_only:
        build(args.workdir, kinds).save(args.workdir / SETUP_FILE)
        return
    with tempfile.TemporaryDirectory(prefix="avsearch-cold-") as tmp:
        work = args.workdir or Path(tmp)
        if args.reuse and (work / SETUP_FILE).is_file():
            setup = Setup.load(work / SETUP_FILE)
            print(f"the index of an earlier run in {work} (--reuse)")
        else:
            if work.exists() and any(work.iterdir()):
                sys.exit(f"{work}: not empty; give an empty or new --workdir (or --reuse its index)")
            work.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            setup = build_in_child(work, kinds)
            print(f"built the index ({setup.rows} rows) in {time.perf_counter() - t0:.1f} s ({os.cpu_count()} cores)")
        load = os.getloadavg()
        print(f"avsearch of {CHECKOUT['root']}" + (f", before: {args.before}" if args.before else ""))
        print(f"load average at the start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)\n")
        lines = [
            f"{'route':<10} {'startup':>7} {'setup':>6}  {'model loads (s)':<34} "
            f"{'encode':>6} {'search':>6} {'total':>6} {'CPU':>5} {'imports':>7} {'RSS MB':>7}"
        ]
        checkouts = [("", CHECKOUT["root"])]
        if args.before is not None:
            checkouts = [("before", args.before.resolve()), ("after", CHECKOUT["root"])]
        cache = work / "cache"  # shared: an export is named by its export version (see the docstring)
        for kind in kinds:
            print(f"{kind}: {args.repeat} cold runs, then one under -X importtime", file=sys.stderr, flush=True)
            runs: dict[str, list[Run]] = {label: [] for label, _ in checkouts}
            first: dict[str, float] = {}
            for label, root in checkouts:
                _use(root, cache)
                first[label] = run_query(setup, kind).wall
            for _ in range(args.repeat):
                for label, root in checkouts:
                    _use(root, cache)
                    runs[label].append(run_query(setup, kind))
            walls = {}
            for label, root in checkouts:
                _use(root, cache)
                imports = import_shares(run_query(setup, kind, importtime=True).stderr)
                name = f"{kind} {label}".strip()
                report(name, runs[label], imports, lines)
                walls[label] = statistics.median(r.wall for r in runs[label])
                lines.append(f"{'':<10} first run of this checkout: {first[label]:.2f} s")
            if args.before is not None:
                rss = {k: statistics.median(r.rss_mb for r in v) for k, v in runs.items()}
                cpu = {k: statistics.median(r.cpu for r in v) for k, v in runs.items()}
                lines.append(
                    f"{'':<10} after/before: wall {walls['after'] / walls['before']:.2f}x "
                    f"({walls['before']:.2f} -> {walls['after']:.2f} s), CPU {cpu['before']:.2f} -> "
                    f"{cpu['after']:.2f} s, RSS {rss['before']:.0f} -> {rss['after']:.0f} MB"
                )
        load = os.getloadavg()
        print("\n".join(lines))
        print(
            f"\nseconds, medians of {args.repeat} cold runs of each route (default --target all) on a "
            f"{setup.rows}-row index; loads include the imports they trigger; imports: one more run under "
            "python -X importtime, its top-level imports by the stage they happened in. "
            f"Load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}."
        )


if __name__ == "__main__":
    main()
