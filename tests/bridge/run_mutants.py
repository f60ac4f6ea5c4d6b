"""Run the bridge tests against every broken trainer of source_mutants.py; print which tests turn red.

    .venv/bin/python -m tests.bridge.run_mutants [--tests FILE ...] [--only NAME ...] [--timeout S]

Each variant is applied to a fresh copy of avsearch/, tests/, configs/ and pyproject.toml in a temporary
folder and pytest runs there (the copy's package is the one imported: checked before every run), so the
working tree, which others may be testing, is never touched. The unmutated copy runs first: a test red
there counts for no mutant. Exit status 1 if the baseline is red or any variant leaves every test green.
Not part of the suite: with the default tests 45-100 s per variant, 15-35 min for all 20, on a busy
2-core CPU; the tests it relies on run in the normal suite.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bridge.source_mutants import MUTANTS, Variant, apply

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TESTS = (
    "tests/bridge/test_golden_step.py",
    "tests/bridge/test_losses.py",
    "tests/bridge/test_consistency.py",
)
COPIED = ("avsearch", "tests", "configs", "pyproject.toml")
RED = re.compile(r"^(FAILED|ERROR) (\S+)", re.MULTILINE)
NOT_A_CATCH = "test_source_mutants"  # red under every mutant by construction: its texts are gone from the copy


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def _run_tests(folder: Path, tests: list[str], timeout: float) -> tuple[set[str], str]:
    """Red test ids of one pytest run in `folder`, and the tail of its output."""
    env = {**os.environ, "PYTHONPATH": str(folder), "PYTHONDONTWRITEBYTECODE": "1"}
    probe = subprocess.run(
        [sys.executable, "-c", "import avsearch.bridge.train as t; print(t.__file__)"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if not probe.stdout.strip().startswith(str(folder)):
        raise RuntimeError(f"the copy in {folder} is not the package imported: {probe.stdout or probe.stderr}")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "--no-header", *tests]
    try:
        done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"(timed out)"}, ""
    out = done.stdout + done.stderr
    red = {m.group(2) for m in RED.finditer(out)}
    if done.returncode not in (0, 1) and not red:  # collection or usage error without a test id
        red = {f"(pytest exit {done.returncode})"}
    return red, out[-3000:]


def _short(test_id: str) -> str:
    """tests/bridge/test_x.py::test_y[param] -> test_x::test_y"""
    return re.sub(r"\[.*\]$", "", test_id.replace("tests/bridge/", "").replace(".py::", "::"))


def run_variant(variant: Variant | None, tests: list[str], timeout: float) -> tuple[set[str], str]:
    with tempfile.TemporaryDirectory(prefix="avsearch-mutant-") as tmp:
        folder = Path(tmp)
        _copy_tree(folder)
        if variant is not None:
            for name, text in apply(variant, folder / "avsearch" / "bridge").items():
                (folder / "avsearch" / "bridge" / name).write_text(text, encoding="utf-8")
        return _run_tests(folder, tests, timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", nargs="+", default=list(DEFAULT_TESTS), help="test files or ids to run")
    parser.add_argument("--only", nargs="+", default=None, help="mutant names to run (default: all)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per pytest run")
    args = parser.parse_args(argv)
    names = args.only or list(MUTANTS)
    unknown = [n for n in names if n not in MUTANTS]
    if unknown:
        parser.error(f"unknown mutant(s) {unknown}; known: {list(MUTANTS)}")

    started = time.perf_counter()
    baseline, tail = run_variant(None, args.tests, args.timeout)
    print(f"baseline (unmutated copy): {'green' if not baseline else 'RED: ' + ', '.join(sorted(baseline))}")
    if baseline:
        print(tail)
    survivors = []
    rows = []
    for name in names:
        for variant in MUTANTS[name]:
            red, _ = run_variant(variant, args.tests, args.timeout)
            caught = sorted({_short(t) for t in red - baseline if NOT_A_CATCH not in t})
            if not caught:
                survivors.append(f"{name} / {variant.name}")
            rows.append((name, variant.name, caught))
            print(f"  {name} / {variant.name}: {len(caught)} red", flush=True)

    print("\n| mutant | variant | red tests |\n|---|---|---|")
    for name, variant_name, caught in rows:
        print(f"| {name} | {variant_name} | {', '.join(caught) if caught else 'NONE (survives)'} |")
    print(
        f"\n{len(rows)} variants of {len(names)} mutants in {time.perf_counter() - started:.0f} s; tests: {args.tests}"
    )
    if survivors:
        print("survivors: " + "; ".join(survivors))
    return 1 if baseline or survivors else 0


if __name__ == "__main__":
    sys.exit(main())
