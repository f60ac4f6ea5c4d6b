"""End to end through the CLI with the REAL CLIP ViT-B/32 and CLAP HTSAT architectures (random weights
the tests make, tests/weights_factory.py) and a random-weight bridge: index, query every form, info,
incremental re-index, and a run killed with SIGKILL that the next run completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avsearch.bridge.io import load_bridge
from avsearch.cli.app import app
from avsearch.encoders.registry import load_encoder
from avsearch.store.tables import MediaStore
from tests.search.media_factory import make_media, write_image

runner = CliRunner()
N_IMAGES, N_AUDIO = 16, 6


def _cli(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="session")
def indexed(tmp_path_factory, av_weights_dir, bridge_file):
    root = tmp_path_factory.mktemp("media")
    made = make_media(root, images=N_IMAGES, audio=N_AUDIO)
    index = tmp_path_factory.mktemp("index")
    result = runner.invoke(
        app,
        [
            "index",
            str(root),
            "--index-dir",
            str(index),
            "--bridge",
            str(bridge_file),
            "--weights-dir",
            str(av_weights_dir),
            "--batch-size",
            "8",
            "--quiet",
        ],
    )
    assert result.exit_code == 3, result.output  # indexed, but the corrupt files could not be
    return root, made, index, result


def test_index_reports_counts_and_bad_files(indexed) -> None:
    root, made, index, result = indexed
    assert "image in index" in result.stdout
    assert f"FAISS image.proj_audio_visual: {N_IMAGES} vectors, flat (exact)" in result.stdout
    for bad in made["corrupt"]:
        assert bad.name in result.stderr
    store = MediaStore(index)
    assert store.count("image") == N_IMAGES and store.count("audio") == N_AUDIO


def test_queries_every_form(indexed, av_weights_dir, bridge_file) -> None:
    root, made, index, _ = indexed
    common = ["--index-dir", index, "--weights-dir", av_weights_dir, "--json"]
    audio_q, image_q = made["audio"][3], made["image"][5]

    a2i = json.loads(_cli("query", "--audio", audio_q, "--target", "image", "-k", "5", *common))
    assert [(r["target"], r["space"]) for r in a2i] == [("image", "shared:audio_visual")]
    # The top hit is the exact argmax of bridge(CLAP(audio)) . stored image projections.
    clap = load_encoder("clap-630k-fusion", ("audio",), av_weights_dir, "cpu")
    q = load_bridge(bridge_file).project("clap", clap.encode_files("audio", [audio_q]), modality="audio")
    paths, vectors, _ = MediaStore(index).vectors("image", "proj_audio_visual")
    assert a2i[0]["hits"][0]["path"] == paths[int(np.argmax(vectors @ q[0]))]
    assert len(a2i[0]["hits"]) == 5

    i2a = json.loads(_cli("query", "--image", image_q, "--target", "audio", *common))
    assert i2a[0]["space"] == "shared:audio_visual" and len(i2a[0]["hits"]) == N_AUDIO  # k=10 > N_AUDIO
    i2i = json.loads(_cli("query", "--image", image_q, "--target", "image", "-k", "3", *common))
    assert i2i[0]["space"] == "clip" and i2i[0]["hits"][0]["path"] == str(image_q.absolute())
    a2a = json.loads(_cli("query", "--audio", audio_q, "-k", "2", *common))
    assert [r["target"] for r in a2a] == ["audio", "image"]
    assert a2a[0]["hits"][0]["path"] == str(audio_q.absolute())
    t2all = json.loads(_cli("query", "--text", "a dog barking", "-k", "4", *common))
    assert {(r["target"], r["space"]) for r in t2all} == {("image", "clip"), ("audio", "clap")}

    paths_only = _cli(
        "query",
        "--text",
        "birds",
        "--target",
        "image",
        "-k",
        "3",
        "--paths-only",
        "--index-dir",
        index,
        "--weights-dir",
        av_weights_dir,
    )
    assert len(paths_only.strip().splitlines()) == 3
    table = _cli("query", "--image", image_q, "--index-dir", index, "--weights-dir", av_weights_dir)
    assert "image -> audio" in table and "score" in table


def test_info_and_user_errors(indexed, tmp_path) -> None:
    _, _, index, _ = indexed
    out = _cli("info", "--index-dir", index)
    assert "audio_visual" in out and "flat" in out and "schema v2" in out
    from avsearch.store.index import Index

    info = {m.modality: m for m in Index.open(index).describe().modalities}
    assert info["image"].files == N_IMAGES and info["audio"].encoder == "clap-630k-fusion"
    assert info["image"].indexes["proj_audio_visual"]["kind"] == "flat" and not info["image"].indexes["native"]["stale"]
    missing = runner.invoke(app, ["query", "--text", "x", "--index-dir", str(tmp_path / "none")])
    assert missing.exit_code == 1 and "no index here" in missing.stderr
    both = runner.invoke(app, ["query", "--text", "x", "--image", "y.png", "--index-dir", str(index)])
    assert both.exit_code == 1 and "exactly one" in both.stderr


def test_incremental_reindex_with_real_encoders(tmp_path, av_weights_dir, bridge_file) -> None:
    root = tmp_path / "m"
    made = make_media(root, images=4, audio=2)
    args = ["--index-dir", tmp_path / "index", "--weights-dir", av_weights_dir, "--quiet"]

    def index(*extra: object) -> str:  # the corrupt files of make_media make it exit 3 (indexed, some failed)
        result = runner.invoke(app, [str(a) for a in ("index", root, *extra, *args)])
        assert result.exit_code == 3, result.output
        return result.stdout

    index("--bridge", bridge_file)
    write_image(made["image"][0], seed=1234)  # changed
    made["image"][1].rename(root / "moved.png")  # renamed
    made["audio"][0].unlink()  # deleted
    out = index()
    rows = dict(line.strip("│ ").split("│")[:2] for line in out.splitlines() if line.count("│") >= 3)
    counts = {k.strip(): int(v) for k, v in rows.items() if v.strip().isdigit()}
    assert (counts["added"], counts["renamed"], counts["removed"]) == (1, 1, 1)
    assert counts["image in index"] == 4 and counts["audio in index"] == 1


def test_killed_run_leaves_a_consistent_index_and_resumes(tmp_path, av_weights_dir, bridge_file, monkeypatch) -> None:
    root = tmp_path / "m"
    images = [write_image(root / f"img_{i:02d}.png", seed=i) for i in range(12)]
    index = tmp_path / "index"
    cmd = [
        str(Path(sys.executable).parent / "avsearch"),
        "index",
        str(root),
        "--index-dir",
        str(index),
        "--bridge",
        str(bridge_file),
        "--weights-dir",
        str(av_weights_dir),
        "--batch-size",
        "1",
        "--quiet",
    ]
    env = {**os.environ, "AVSEARCH_DEVICE": "cpu"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    count = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        try:
            count = MediaStore(index).count("image")
        except Exception:  # the table may not exist yet
            count = 0
        if count >= 2:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < count < len(images), f"the kill should land mid-run: {proc.stderr.read().decode()[-2000:]}"

    store = MediaStore(index)
    book = store.bookkeeping("image")
    assert 0 < len(book) < len(images) and all(Path(p).is_file() for p in book)

    # Queries work on the partial index (no FAISS index yet: exact search).
    def query_first_image():
        args = ["query", "--image", str(images[0]), "--target", "image", "--json"]
        return runner.invoke(app, [*args, "--index-dir", str(index), "--weights-dir", str(av_weights_dir)])

    partial = query_first_image()
    assert partial.exit_code == 0, partial.output

    # The next run completes it. In this process: the killed one was a process of its own, and this one
    # finds the same files on disk (a new process would only load CLIP again, seconds on 2 cores).
    monkeypatch.setenv("AVSEARCH_DEVICE", "cpu")
    done = runner.invoke(app, cmd[1:])
    assert done.exit_code == 0, done.output
    assert set(MediaStore(index).bookkeeping("image")) == {str(p) for p in images}
    after = query_first_image()
    result = json.loads(after.stdout)
    assert result[0]["index_kind"] == "flat" and result[0]["hits"][0]["path"] == str(images[0])
