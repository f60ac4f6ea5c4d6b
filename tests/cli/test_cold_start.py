"""A cold `avsearch query` in a new process, as a user runs it: a clean stderr, and only the models and
modules its route needs (real CLIP and CLAP architectures with random weights, random bridge)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from avsearch.cli.app import app
from tests.search.conftest import make_bridge
from tests.search.media_factory import write_audio, write_image

AVSEARCH = str(Path(sys.executable).with_name("avsearch"))  # the installed console script

# A test-only sitecustomize put on the PYTHONPATH of a cold run: when the process ends (after the console
# script's sys.exit), it writes what the process loaded to the file named by $PROBE_OUT. Its imports at
# start (atexit, json, os, sys) are none that a check below looks for.
HOOK = """
import atexit, json, os, sys


def _report():
    if "avsearch.encoders.registry" not in sys.modules:  # no model loaded: nothing to list
        cache = {}
    else:
        cache = sys.modules["avsearch.encoders.registry"]._cache
    WATCHED = ("open_clip", "clap_module", "sklearn", "laion_clap")
    models = {name: enc._model for (name, _t, _w, _d), enc in cache.items()}
    clap = models.get("clap-630k-fusion")
    report = {
        "modules": sorted(m for m in sys.modules if m.split(".")[0] in WATCHED),
        "encoders": [[name, list(towers)] for (name, towers, _w, _d) in cache],
        "clap_towers": None if clap is None else [clap.audio_branch is not None, clap.text_branch is not None],
    }
    with open(os.environ["PROBE_OUT"], "w") as fh:
        json.dump(report, fh)


if "PROBE_OUT" in os.environ:
    atexit.register(_report)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AVSEARCH_TIMINGS", "PYTHONWARNINGS")}
    return env | {"HF_HUB_OFFLINE": "1", "AVSEARCH_OFFLINE": "1", **extra}


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory, av_weights_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cold")
    media = root / "media"
    files = {
        "image": [write_image(media / f"pic{i}.png", seed=i) for i in range(3)],
        "audio": [write_audio(media / f"clip{i}.wav", seed=i) for i in range(3)],
    }
    bridge = make_bridge(root / "av.safetensors")
    index = root / "index"
    args = ["index", media, "--index-dir", index, "--bridge", bridge, "--weights-dir", av_weights_dir, "--quiet"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return {"index": index, "weights": av_weights_dir, "audio": files["audio"][1], "image": files["image"][1]}


def _where(cold: dict[str, Path]) -> list[str]:
    return ["--index-dir", str(cold["index"]), "--weights-dir", str(cold["weights"])]


def _cold_run(folder: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`avsearch ARGS` run by the installed console script in a new process (cwd: folder), and what that
    process loaded (written by HOOK at its exit)."""
    hook, out = folder / "hook", folder / "probe.json"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    env = _env(PROBE_OUT=str(out), PYTHONPATH=path)
    done = subprocess.run([AVSEARCH, *args], capture_output=True, text=True, env=env, cwd=folder, timeout=600)
    assert done.returncode == 0, done.stderr
    return done, json.loads(out.read_text())


@pytest.fixture(scope="module")
def audio_query(cold: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """One cold `avsearch query --audio` (the slowest cold route), for the two tests of what it does."""
    return _cold_run(
        tmp_path_factory.mktemp("audio-query"), "query", "--audio", str(cold["audio"]), *_where(cold), "--json"
    )


def test_cold_audio_query_writes_nothing_to_stderr(cold: dict[str, Path], audio_query: tuple) -> None:
    done, _ = audio_query
    assert done.stderr == ""  # no third-party warning, no log line: the results are the only output
    results = json.loads(done.stdout)
    assert [r["target"] for r in results] == ["audio", "image"]
    assert results[0]["hits"][0]["path"] == str(cold["audio"].absolute())


def test_audio_query_loads_only_the_clap_audio_tower(audio_query: tuple) -> None:
    _, report = audio_query
    assert report["encoders"] == [["clap-630k-fusion", ["audio"]]]  # no CLIP: image vectors are stored
    assert report["clap_towers"] == [True, False]  # audio tower kept, text tower dropped
    assert not any(m.startswith(("open_clip", "sklearn", "laion_clap")) for m in report["modules"])
    # laion_clap's model code only, not clap_module/__init__.py's re-exports (training loss, tokenizer...)
    assert "clap_module.model" in report["modules"] and "clap_module.loss" not in report["modules"]


def test_text_query_for_pictures_loads_only_the_clip_text_tower(cold: dict[str, Path], tmp_path: Path) -> None:
    _, report = _cold_run(tmp_path, "query", "--text", "a dog", "--target", "image", *_where(cold), "--json")
    assert report["encoders"] == [["clip-vit-b-32-openai", ["text"]]]
    assert not any(m.startswith(("clap_module", "laion_clap", "sklearn")) for m in report["modules"])
    # open_clip's model code only, not its __init__.py's hub-upload and zero-shot helpers
    assert "open_clip.factory" in report["modules"] and "open_clip.push_to_hf_hub" not in report["modules"]


def test_stage_timings_only_when_asked(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from avsearch.timings import ENV, stage, timed

    @timed("outer")
    def work() -> int:
        with stage("inner"):
            return 7

    monkeypatch.delenv(ENV, raising=False)
    assert work() == 7 and capsys.readouterr().err == ""
    monkeypatch.setenv(ENV, "1")
    assert work() == 7
    lines = capsys.readouterr().err.splitlines()
    assert [line.rsplit(" ", 1)[0] if "end" in line else line for line in lines] == [
        "avsearch-timing: start outer",
        "avsearch-timing: start inner",
        "avsearch-timing: end inner",
        "avsearch-timing: end outer",
    ]
    assert all(float(line.rsplit(" ", 1)[1]) >= 0 for line in lines if " end " in line)


@pytest.mark.skipif(Path("/proc/driver/nvidia").exists(), reason="with an NVIDIA driver torch is asked about CUDA")
def test_info_and_query_by_id_import_no_torch(cold: dict[str, Path]) -> None:
    # These commands load no model: torch (about 2 s to import) has no business on their path.
    probe = "import sys\nfrom avsearch.cli import main\nsys.argv = ['avsearch', *sys.argv[1:]]\n"
    probe += "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)\n"
    where = ["--index-dir", str(cold["index"])]
    for args in (["info", *where], ["query", "--id", str(cold["image"]), "--target", "image", *where]):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, env=_env(), timeout=300
        )
        assert done.stderr.strip().splitlines()[-1] == "False", (args, done.stderr[-2000:])
