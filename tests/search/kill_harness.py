"""Test-only harness: kill `avsearch index` with SIGKILL at a chosen moment, check the interrupted index
answers, resume, and compare the result with an uninterrupted run row by row and vector by vector.
Used by tests/search/test_kill_resume.py (2 trials) and benchmarks/kill_resume.py (N trials)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsearch.store.index import Index

AVSEARCH = str(Path(sys.executable).with_name("avsearch"))


def index_command(root: Path, index: Path, bridge: Path, weights: Path) -> list[str]:
    # batch size 1: the same file meets the same model call in every run, so vectors match bit for bit
    return [AVSEARCH, "index", str(root), "--index-dir", str(index), "--bridge", str(bridge)] + [
        "--weights-dir",
        str(weights),
        "--batch-size",
        "1",
        "--quiet",
    ]


def child_env() -> dict[str, str]:
    return {**os.environ, "AVSEARCH_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}


def snapshot(index_dir: Path) -> dict[str, dict[object, tuple]]:
    """modality -> path (a moment: (path, start, end)) -> (hash, every vector column), after checking each
    FAISS build against its table (built from the table's current version, over exactly the table's paths)."""
    index = Index.open(index_dir)
    out: dict[str, dict[object, tuple]] = {}
    for modality in index.tables.modalities():
        records, vectors = index.tables.fetch(modality, sorted(index.tables.bookkeeping(modality)))
        # a moment is a row of its own (path and times), not the last row of its file
        out[modality] = {
            r.path if r.start is None else (r.path, r.start, r.end): (
                r.hash,
                *(vectors[c][i].tobytes() for c in sorted(vectors)),
            )
            for i, r in enumerate(records)
        }
        for column in vectors:
            ann = index.ann(f"{modality}.{column}", use_gpu=False)
            if ann is not None:
                assert ann.table_version == index.tables.version(modality), f"{modality}.{column} is stale"
                rows = index.tables.vectors(modality, column)[0]  # row names: a path, or a moment's path and times
                assert sorted(ann.paths) == sorted(rows), f"{modality}.{column} paths differ from its table"
                assert ann.index.ntotal == len(rows)
    return out


@dataclass
class Trial:
    delay: float  # seconds after the start when the kill was sent
    rows_at_kill: int  # image rows committed when it died (-1: no table yet)
    finished_first: bool  # the run ended before the kill landed
    identical: bool  # the resumed index equals the uninterrupted one
    answered: bool  # query and info worked on the interrupted index


def kill_and_resume(
    cmd: list[str], index: Path, delay: float, reference: dict, probe: Path, at_rows: int | None = None
) -> Trial:
    """Run cmd, SIGKILL it after `delay` s (at_rows: as soon as that many image rows are committed, within
    `delay` s), query the interrupted index, resume it, compare with `reference`."""
    shutil.rmtree(index, ignore_errors=True)
    env = child_env()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if at_rows is None:
        time.sleep(delay)
    else:
        deadline = time.monotonic() + delay
        while _rows(index) < at_rows and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows = _rows(index)
    answered = True
    if rows >= 0:
        base = ["--index-dir", str(index)]
        committed = str(probe) in Index.open(index).tables.bookkeeping("image")
        query = subprocess.run(
            [AVSEARCH, "query", "--id", str(probe), "--target", "image", *base],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if committed:
            answered &= query.returncode == 0 and query.stdout.strip() != "" and "Traceback" not in query.stderr
        else:  # the probe's row is not committed yet: the one-line "no such item" answer, nothing else
            answered &= query.returncode == 1 and query.stderr.startswith(
                f"avsearch: error: {probe}: no such item in this index"
            )
            answered &= len(query.stderr.strip().splitlines()) == 1
        info = subprocess.run([AVSEARCH, "info", *base], env=env, capture_output=True, text=True, timeout=300)
        answered &= info.returncode == 0 and f"index      {index}" in info.stdout and "Traceback" not in info.stderr
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    identical = resumed.returncode == 0 and snapshot(index) == reference
    return Trial(delay, rows, finished, identical, answered)


def _rows(index: Path) -> int:
    """Image rows committed (-1: the index has not described itself or made its table yet)."""
    try:
        return Index.open(index).tables.count("image")
    except Exception:
        return -1


def reference_run(cmd: list[str], index: Path) -> tuple[dict, float]:
    """An uninterrupted run: its snapshot and how long it took."""
    shutil.rmtree(index, ignore_errors=True)
    started = time.monotonic()
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return snapshot(index), time.monotonic() - started


def random_delays(n: int, duration: float, seed: int = 0) -> list[float]:
    """Kill moments spread over the run (model loading, embedding, FAISS building, the end)."""
    return sorted(float(x) for x in np.random.default_rng(seed).uniform(0.3, duration, size=n))
