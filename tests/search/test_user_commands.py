"""The three commands the product is used by, typed exactly as a user types them, in a fresh folder (pictures,
sounds, 3D shapes, a video with sound and a recording longer than one CLAP window) with only AVSEARCH_WEIGHTS
set: real CLIP, CLAP, ULIP-2 architectures and the released C-MCR bridge layouts, all with random weights
made by tests/weights_factory.py (the documented weights-folder layout)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avsearch.store.tables import MediaStore
from tests.media.videos import make_video
from tests.search.media_factory import write_audio, write_image
from tests.weights_factory import make_full_weights

AVSEARCH = str(Path(sys.executable).with_name("avsearch"))  # the installed console script


def _run(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = shlex.split(line)
    assert args[0] == "avsearch"
    return subprocess.run([AVSEARCH, *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _cloud(path: Path, seed: int) -> Path:
    """An ASCII PLY point cloud (what a user's model.ply is)."""
    pts = np.random.default_rng(seed).normal(size=(600, 3)) * (1.0, 0.5, 0.25)
    header = f"ply\nformat ascii 1.0\nelement vertex {len(pts)}\n" + "".join(f"property float {c}\n" for c in "xyz")
    header += "end_header\n"
    path.write_text(header + "\n".join(" ".join(f"{v:.5f}" for v in p) for p in pts) + "\n")
    return path


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory, av_weights_dir) -> tuple[Path, dict[str, str], set[str]]:
    home = tmp_path_factory.mktemp("user")
    weights = home / "weights"
    shutil.copytree(av_weights_dir, weights)  # CLIP + CLAP (shared, session-cached) ...
    make_full_weights(weights)  # ... plus clap_clip.pt, ulip_clip.pt and pointbert_ULIP-2.pt
    media = home / "media"
    media.mkdir()
    files = [write_image(media / f"photo_{i}.png", seed=i) for i in range(4)]
    files += [write_audio(media / f"sound_{i}.wav", seed=i) for i in range(3)]
    files += [_cloud(media / f"shape_{i}.ply", seed=i) for i in range(2)]
    # moments: a 12 s video (a red square 4-8 s, a tone 6-9 s) and a 25 s field recording
    files += [make_video(media / "walk.mp4", seconds=12.0, square=(4.0, 8.0), tone=(6.0, 9.0))]
    files += [write_audio(media / "field.wav", seed=9, seconds=25.0)]
    write_audio(home / "dog.wav", seed=42)
    _cloud(home / "model.ply", seed=7)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVSEARCH_")}
    env["AVSEARCH_WEIGHTS"] = "weights"  # relative, as the README writes it
    return home, env, {str(f) for f in files}


def test_the_three_commands_work_as_typed(user_folder) -> None:
    home, env, indexed = user_folder

    index = _run("avsearch index ./media", home, env)
    assert index.returncode == 0, index.stderr
    assert (home / "indexes" / "default" / "manifest.json").is_file()
    counts = dict(re.findall(r"│ (\w+) in index\s*│\s*(\d+)", index.stdout))
    # rows: 4 photos + the video's frames (grey 0-4 s, square 4-8 s, grey 8-12 s: a static shot is one row);
    # 3 sounds + the recording's windows (0-10, 5-15, 10-20, 15-25) + the video's sound (0-10, 2-12)
    assert counts == {"image": "7", "audio": "9", "pointcloud": "2"}, index.stdout

    query = _run("avsearch query --audio dog.wav", home, env)
    assert query.returncode == 0, query.stderr
    found = set(re.findall(r"(/\S+\.(?:png|wav|ply))", query.stdout))
    # audio -> image through the released audio-visual bridge, audio -> audio in CLAP's space
    assert {p for p in found if p.endswith(".png")} == {p for p in indexed if p.endswith(".png")}, query.stdout
    assert {p for p in found if p.endswith(".wav")} == {p for p in indexed if p.endswith(".wav")}, query.stdout
    assert "shared:audio_visual" in query.stdout
    # moments are listed with their time range (mm:ss-mm:ss; below the path when the column wraps)
    for name in ("walk.mp4", "field.wav"):
        assert re.search(rf"/media/{re.escape(name)}[\s│]+\d\d:\d\d-\d\d:\d\d", query.stdout), query.stdout

    # k below the number of files: the right ones, in the right order. Expected from the vectors the index
    # stores (numpy dot products), the query being an indexed sound (its fresh vector is its stored one).
    ranked = _run("avsearch query --audio media/sound_1.wav -k 2 --json", home, env)
    assert ranked.returncode == 0, ranked.stderr
    lists = {r["target"]: r for r in json.loads(ranked.stdout)}
    store = MediaStore(home / "indexes" / "default")
    sound = str(home / "media" / "sound_1.wav")
    for target, column in (("image", "proj_audio_visual"), ("audio", "native")):
        sounds, sound_vectors, _ = store.vectors("audio", column)
        paths, vectors, _ = store.vectors(target, column)
        scores = vectors @ sound_vectors[sounds.index(sound)]
        order = np.argsort(-scores, kind="stable")
        top = scores[order]
        assert len(top) > 2 and min(top[0] - top[1], top[1] - top[2]) > 4e-3, top  # a clear order (seeded media)
        hits = lists[target]["hits"]
        assert [h["path"] for h in hits] == [paths[i] for i in order[:2]], (target, hits, top)
        np.testing.assert_allclose([h["score"] for h in hits], top[:2], atol=2e-3)
    assert lists["audio"]["hits"][0]["path"] == sound  # a sound finds itself first

    classify = _run("avsearch classify3d model.ply", home, env)
    assert classify.returncode == 0, classify.stderr
    labels = (Path(__file__).parents[2] / "configs" / "labels" / "modelnet40.txt").read_text().splitlines()
    ranked = re.findall(r"│\s*(\d)\s*│\s*([^│]+?)\s*│\s*(-?\d\.\d{4})\s*│", classify.stdout)
    assert [int(r) for r, _, _ in ranked] == [1, 2, 3, 4, 5], classify.stdout
    assert all(label in labels for _, label, _ in ranked)
    scores = [float(s) for _, _, s in ranked]
    assert scores == sorted(scores, reverse=True)


def test_a_missing_default_bridge_is_one_line(tmp_path, av_weights_dir) -> None:
    weights = tmp_path / "weights"
    shutil.copytree(av_weights_dir, weights)  # encoders present, released bridges absent
    (tmp_path / "media").mkdir()
    write_image(tmp_path / "media" / "a.png", seed=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVSEARCH_")}
    env |= {"AVSEARCH_WEIGHTS": "weights", "AVSEARCH_OFFLINE": "1"}  # off-line: no download attempt
    result = _run("avsearch index ./media", tmp_path, env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "avsearch: error: model weights clap_clip.pt not found (off-line mode); get it from "
        "https://github.com/MCR-PEFT/C-MCR/raw/main/checkpoints/clap_clip.pt and put it in the weights folder "
        "weights"
    ]
    assert not (tmp_path / "indexes" / "default" / "manifest.json").exists()  # nothing half-made
