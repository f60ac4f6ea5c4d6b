"""End-to-end: `avsearch train`, `project` and `eval retrieval` through the real Typer app."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from avsearch.cli import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def bridge_file(preset_synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "av.safetensors"
    result = _run(
        "train", "--embeddings", preset_synthetic_dir, "--out", out, "--epochs", 3, "--batch-size", 512, "--quiet"
    )
    assert result.exit_code == 0, result.output
    assert "fingerprint" in result.stdout and "pairs/s" in result.stdout
    return out


def test_train_project_eval_round_trip(bridge_file, preset_synthetic_dir, tmp_path):
    audio, image = tmp_path / "audio.npy", tmp_path / "image.npy"
    for space, src, dst in (("clap", "test_audio.clap.npy", audio), ("clip", "test_image.clip.npy", image)):
        result = _run("project", preset_synthetic_dir / src, dst, "--bridge", bridge_file, "--space", space)
        assert result.exit_code == 0, result.output
    projected = np.load(audio)
    assert projected.shape == (400, 512)
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1, atol=1e-5)

    result = _run("eval", "retrieval", "--queries", audio, "--gallery", image, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 400 and report["q2g"]["mAP"] > 10 * report["chance"]["mAP"]

    # The same evaluation projecting on the fly gives the same figures.
    result = _run(
        "eval",
        "retrieval",
        "--queries",
        preset_synthetic_dir / "test_audio.clap.npy",
        "--gallery",
        preset_synthetic_dir / "test_image.clip.npy",
        "--bridge",
        bridge_file,
        "--query-space",
        "clap",
        "--gallery-space",
        "clip",
        "--json",
    )
    assert json.loads(result.stdout)["q2g"] == report["q2g"]
    table = _run("eval", "retrieval", "--queries", audio, "--gallery", image)
    assert "chance" in table.stdout and "R@5" in table.stdout


def test_ablation_flags_reach_the_saved_hyper_parameters(preset_synthetic_dir, tmp_path):
    from avsearch.bridge.fast import read_bridge_meta

    out = tmp_path / "f.safetensors"
    result = _run(
        "train",
        "-e",
        preset_synthetic_dir,
        "-o",
        out,
        "--epochs",
        1,
        "--batch-size",
        1024,
        "--no-ttc",
        "--no-avc",
        "--no-intra",
        "clap",
        "--no-renorm",
        "--consistency",
        "argmax",
        "--seed",
        3,
        "--lr",
        0.002,
        "-q",
    )
    assert result.exit_code == 0, result.output
    hyper = read_bridge_meta(out)[0].hyper
    assert hyper["ablation"] == {
        "renorm": False,
        "noise": True,
        "ttc": False,
        "avc": False,
        "intra": ["clip"],
    }
    assert hyper["consistency"]["mode"] == "argmax" and hyper["optim"]["seed"] == 3 and hyper["optim"]["lr"] == 0.002


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "-e", "{tmp}/none", "-o", "{tmp}/b.safetensors"), "embeddings folder not found"),
        (("train", "-e", "{syn}", "-o", "{tmp}/b.safetensors", "--no-intra", "ulip"), "--no-intra ulip"),
        (("train", "-e", "{syn}", "-o", "{tmp}/b.safetensors", "-c", "nope"), "nope: config file not found"),
        (
            ("train", "-e", "{syn}", "-o", "{tmp}/b.safetensors", "--consistency", "max"),
            "unknown consistency mode",
        ),
        (
            ("project", "{syn}/text.clap.npy", "{tmp}/o.npy", "-b", "{tmp}/none.safetensors", "-s", "clap"),
            "bridge file not found",
        ),
        (
            ("project", "{tmp}/missing.npy", "{tmp}/o.npy", "-b", "{bridge}", "-s", "clap"),
            "missing.npy: file not found",
        ),
        (("project", "{syn}/text.clap.npy", "{tmp}/o.npy", "-b", "{bridge}", "-s", "ulip"), "not 'ulip'"),
        (
            ("project", "{syn}/text.clap.npy", "{tmp}/o.npy", "-b", "{bridge}", "-s", "clap", "-m", "video"),
            "projects text or audio through its clap side, not 'video'",
        ),
        (
            ("train", "-e", "{syn}", "-o", "{tmp}/b.safetensors", "--checkpoint", "{bridge}.ckpt", "--resume"),
            "was written with another config (optim.batch_size, optim.epochs differ)",
        ),
        (
            ("eval", "retrieval", "-q", "{syn}/text.clap.npy", "-g", "{syn}/test_image.clip.npy"),
            "rows must pair up",
        ),
    ],
)
def test_bad_input_gives_one_clear_line_and_exit_1(args, message, preset_synthetic_dir, bridge_file, tmp_path):
    args = [a.format(tmp=tmp_path, syn=preset_synthetic_dir, bridge=bridge_file) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("avsearch: error:"), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output
