"""The import budget of each cold route (issue 25): which packages a new `avsearch` process may import.

A cold command pays for every module it imports, so each route has a budget, checked on a real process
under `python -X importtime`: the third-party packages it may import (a new one fails here: add it to the
route's budget only when the route needs it, and say what it costs), packages it must never import
(torch and the upstream model code, wandb, torch._dynamo, pandas, lancedb and its REST client, FAISS for a
flat index on the CPU), modules a route must not import (`never`: e.g. the other commands' modules), and a
cap on the number of modules (stdlib and avsearch ones included), so that a heavier import path cannot
creep in one module at a time. No wall-clock times are asserted.

The world is cheap: an index made from random vectors (`avsearch index --embeddings`: no encoder runs to
build it) with the random audio-visual bridge, and the query towers on ONNX Runtime, exported once per
session into the session's cache (the first query of a route exports its towers when the session has not
yet: the route is then measured again). AVSEARCH_DEVICE=cpu: the same budget on a machine with a GPU.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.cli.commands import COMMANDS
from tests.search.conftest import make_bridge
from tests.search.media_factory import write_image

_TOP_IMPORT = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\S+)")  # -X importtime, a top-level import
ROWS = 40  # per modality: enough for a FAISS build of each table, small enough to build in seconds

# Never on a cold route: the model runtime and upstream model code (routes on ONNX Runtime or with no
# model), training/tracking hooks, pandas (pyarrow would import it: store/lance_read.py), lancedb and the
# REST client it carries (reads use the lance dataset API), FAISS (a flat index on the CPU: store/exact.py),
# pydantic (Typer's option parsing imports it: plain values are parsed without it, cli/plain_options.py).
FORBIDDEN = (
    "torch",
    "torchvision",
    "torchaudio",
    "open_clip",
    "laion_clap",
    "clap_module",
    "timm",
    "transformers",
    "wandb",
    "librosa",
    "sklearn",
    "pandas",
    "lancedb",
    "lance_namespace",
    "lance_namespace_urllib3_client",
    "faiss",
    "pydantic",
    "pydantic_core",
)
# Every route: the CLI (typer, rich), arrays, and the tables (lance, pyarrow).
BASE = frozenset(
    {
        "annotated_doc",
        "avsearch",
        "cloudpickle",  # lance
        "cython_runtime",  # not a package: the module Cython extensions (lance, pyarrow) register
        "dateutil",  # pyarrow
        "lance",
        "numpy",
        "pyarrow",
        "rich",
        "shellingham",
        "typer",
        "typing_extensions",
    }
)


def _other_commands(runs: str) -> tuple[str, ...]:
    """The command modules a route never needs: every one but the module of the command that runs (each is
    imported when its command is looked up: cli/commands.py), and the eval group's own modules."""
    modules = {*COMMANDS.values(), "eval_localize", "eval_classify3d", "live_progress", "localize_options"}
    return tuple(sorted(f"avsearch.cli.{m}" for m in modules - {COMMANDS[runs]}))


@dataclass(frozen=True)
class Budget:
    args: Callable[[dict[str, Path]], list[str]]  # the command line, from the world's paths
    allowed: frozenset[str]  # third-party top-level packages the route may import
    must: tuple[str, ...]  # what proves it ran its route (e.g. onnxruntime for an encoder on ONNX)
    max_modules: int  # every module, stdlib and avsearch included (measured + about 10%)
    never: tuple[str, ...] = ()  # modules (and their submodules) the route must not import, beyond FORBIDDEN


ROUTES = {
    "info": Budget(  # reads no config file (tomllib), parses options without pydantic (FORBIDDEN)
        lambda w: ["info", "--index-dir", str(w["index"])], BASE, (), 505, (*_other_commands("info"), "tomllib")
    ),
    "query --id": Budget(
        lambda w: ["query", "--id", "pic-3", *_where(w), "--json"],
        BASE | {"safetensors"},
        ("safetensors",),
        540,
        _other_commands("query"),
    ),
    "query --text": Budget(
        lambda w: ["query", "--text", "a dog barking in the rain", *_where(w), "--json"],
        BASE | {"onnxruntime", "tokenizers", "ftfy", "wcwidth", "regex"},  # CLIP's and CLAP's tokenizers
        ("onnxruntime", "tokenizers"),
        710,
        _other_commands("query"),
    ),
    "query --image": Budget(
        lambda w: ["query", "--image", str(w["picture"]), *_where(w), "--json"],
        BASE | {"onnxruntime", "PIL", "safetensors"},
        ("onnxruntime", "PIL"),
        660,
        _other_commands("query"),
    ),
    # The audio and 3D query towers move to ONNX Runtime next (encoders/onnx_clap.py, onnx_ulip.py): their
    # routes get their budgets here when they do (the world then needs a sound file, and ULIP weights,
    # 3D vectors and the 3D bridge for --pointcloud).
    # "query --audio": Budget(lambda w: ["query", "--audio", str(w["sound"]), ...], BASE | {...}, ..., ...),
    # "query --pointcloud": Budget(...),
}


def _where(world: dict[str, Path]) -> list[str]:
    return ["--index-dir", str(world["index"]), "--weights-dir", str(world["weights"])]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, av_weights_dir: Path) -> dict[str, Path]:
    """An index of random vectors (pictures and sounds, ids pic-N and snd-N) with the random bridge."""
    root = tmp_path_factory.mktemp("budget")
    vectors = root / "vectors"
    vectors.mkdir()
    rng = np.random.default_rng(25)
    for modality, space, prefix in (("image", "clip", "pic"), ("audio", "clap", "snd")):
        x = rng.standard_normal((ROWS, 512)).astype(np.float32)
        np.save(vectors / f"{modality}.{space}.npy", x / np.linalg.norm(x, axis=1, keepdims=True))
        rows = "".join(json.dumps({"source": f"{prefix}-{i}"}) + "\n" for i in range(ROWS))
        (vectors / f"{modality}.{space}.rows.jsonl").write_text(rows)
    index = root / "index"
    bridge = make_bridge(root / "av.safetensors")
    args = ["index", "--embeddings", str(vectors), "--index-dir", str(index), "--bridge", str(bridge), "--quiet"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    picture = write_image(root / "query.png", seed=7, size=48)
    return {"index": index, "weights": av_weights_dir, "picture": picture}


# Runs the CLI in-process, then writes the modules the process holds (imported: a failed attempt, as
# pyarrow's for pandas, is not one) to the file named by $MODULES_OUT.
PROBE = """
import json, os, sys
from avsearch.cli import main
sys.argv = ["avsearch", *sys.argv[1:]]
try:
    main()
finally:
    with open(os.environ["MODULES_OUT"], "w") as fh:
        json.dump(sorted(sys.modules), fh)
"""


def _slowest(stderr: str, n: int = 8) -> str:
    """The n slowest top-level imports of an -X importtime run, for a failure message."""
    found = [(int(m.group(1)), m.group(2)) for line in stderr.splitlines() if (m := _TOP_IMPORT.match(line))]
    return ", ".join(f"{name} {us / 1e6:.2f} s" for us, name in sorted(found, reverse=True)[:n])


def _cold(args: list[str], out: Path) -> tuple[set[str], subprocess.CompletedProcess]:
    """Run `avsearch ARGS` in a new process under -X importtime: the modules it imported, and the run."""
    env = {k: v for k, v in os.environ.items() if k not in ("AVSEARCH_TIMINGS", "PYTHONWARNINGS")}
    env |= {"AVSEARCH_ONNX": "1", "AVSEARCH_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "AVSEARCH_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=env | {"MODULES_OUT": str(out)},
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(out.read_text())), done


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_cold_route_imports_only_its_budget(route: str, world: dict[str, Path], tmp_path: Path) -> None:
    budget = ROUTES[route]
    modules, done = _cold(budget.args(world), tmp_path / "modules.json")
    if "torch" in modules and "onnxruntime" in budget.must:  # that run exported the route's towers (the
        modules, done = _cold(budget.args(world), tmp_path / "modules.json")  # first in this session)
    packages = {m.split(".")[0] for m in modules}
    slowest = _slowest(done.stderr)
    assert not packages & set(FORBIDDEN), f"{route} imported {sorted(packages & set(FORBIDDEN))}; slowest: {slowest}"
    unneeded = sorted(m for m in modules if any(m == n or m.startswith(f"{n}.") for n in budget.never))
    assert not unneeded, f"{route} imported {unneeded}"
    third_party = {p for p in packages if p not in sys.stdlib_module_names and not p.startswith("_")}
    assert third_party <= budget.allowed, (
        f"{route} imported packages outside its budget: {third_party - budget.allowed}"
    )
    assert set(budget.must) <= packages, f"{route} did not run its route: {set(budget.must) - packages} not imported"
    assert len(modules) <= budget.max_modules, (
        f"{route} imported {len(modules)} modules (budget {budget.max_modules}); slowest: {slowest}"
    )
    if route != "info":
        results = json.loads(done.stdout)
        assert {r["target"] for r in results} == {"image", "audio"} and all(r["hits"] for r in results)
