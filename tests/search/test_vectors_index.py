"""`avsearch index --embeddings DIR` and `avsearch query --id ITEM` (more like this) through the CLI, on
random 512-d vectors and a random-weight audio-visual bridge: no encoder is loaded at any point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avsearch.bridge.io import load_bridge
from avsearch.cli.app import app

runner = CliRunner()


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, 512)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture()
def vectors(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "vectors"
    folder.mkdir()
    np.save(folder / "image.clip.npy", _unit(rng, 40))
    np.save(folder / "audio.clap.npy", _unit(rng, 30))
    (folder / "audio.clap.rows.jsonl").write_text(
        "".join(json.dumps({"source": f"clip-{i}"}) + "\n" for i in range(30))
    )
    np.save(folder / "text.clip.npy", _unit(rng, 5))  # not something an index holds
    np.save(folder / "pointcloud.ulip.npy", _unit(rng, 3))  # no 3D bridge in this index
    return folder


def _invoke(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def test_vectors_are_indexed_through_the_bridge_and_found_by_id(vectors, bridge_file, tmp_path) -> None:
    index = tmp_path / "index"
    result = _invoke("index", "--embeddings", vectors, "--bridge", bridge_file, "--index-dir", index, "-q")
    assert result.exit_code == 3, result.output  # two files listed as not fitting
    assert "image in index │    40" in result.stdout and "audio in index │    30" in result.stdout
    assert "text.clip.npy: not vectors this index holds" in result.stderr
    assert "pointcloud.ulip.npy: not vectors this index holds" in result.stderr

    # audio -> image by id: the stored audio vector through the bridge against the stored images.
    out = _invoke("query", "--id", "clip-7", "--target", "image", "-k", "5", "--index-dir", index, "--json")
    assert out.exit_code == 0, out.output
    hits = json.loads(out.stdout)[0]["hits"]
    bridge = load_bridge(bridge_file)
    audio = np.load(vectors / "audio.clap.npy")[7:8]
    images = np.load(vectors / "image.clip.npy")
    scores = bridge.project("clip", images, modality="image") @ bridge.project("clap", audio, modality="audio")[0]
    expected = [f"{vectors / 'image.clip.npy'}#{i}" for i in np.argsort(-scores)[:5]]
    assert [h["path"] for h in hits] == expected
    np.testing.assert_allclose([h["score"] for h in hits], np.sort(scores)[::-1][:5], atol=1e-5)

    # same modality: native space, the item itself left out, ranks renumbered.
    own = json.loads(
        _invoke("query", "--id", "clip-7", "--target", "audio", "-k", "3", "--index-dir", index, "--json").stdout
    )
    clap = np.load(vectors / "audio.clap.npy")
    order = [i for i in np.argsort(-(clap @ clap[7])) if i != 7][:3]
    assert [h["path"] for h in own[0]["hits"]] == [f"clip-{i}" for i in order]
    assert [h["rank"] for h in own[0]["hits"]] == [1, 2, 3]

    # again: rows are replaced by id, not added twice
    again = _invoke("index", "--embeddings", vectors, "--index-dir", index, "-q")
    assert again.exit_code == 3 and "audio in index │    30" in again.stdout


def test_unknown_id_and_bad_arguments_are_one_line(vectors, bridge_file, tmp_path) -> None:
    index = tmp_path / "index"
    assert _invoke("index", "--embeddings", vectors, "--bridge", bridge_file, "--index-dir", index, "-q").exit_code == 3
    missing = _invoke("query", "--id", "nope", "--index-dir", index)
    assert missing.exit_code == 1 and missing.stderr.startswith("avsearch: error: nope: no such item in this index")
    both = _invoke("index", str(tmp_path), "--embeddings", vectors, "--index-dir", index)
    assert both.exit_code == 1 and "one of the two" in both.stderr


def test_cavmae_vectors_go_to_the_cavmae_tables(bridge_file, tmp_path) -> None:
    """{modality}.cavmae.npy fill an index's CAV-MAE tables (`--backend both`), found by id in CAV-MAE's
    own space; an index without that backend lists them with the way to add it."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "cav"
    folder.mkdir()
    audio = rng.standard_normal((12, 768)).astype(np.float32)
    audio /= np.linalg.norm(audio, axis=1, keepdims=True)
    images = rng.standard_normal((20, 768)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    np.save(folder / "audio.cavmae.npy", audio)
    np.save(folder / "image.cavmae.npy", images)
    (folder / "audio.cavmae.rows.jsonl").write_text("".join(json.dumps({"source": f"s{i}"}) + "\n" for i in range(12)))
    index = tmp_path / "index"
    both = _invoke(
        "index", "--embeddings", folder, "--bridge", bridge_file, "--backend", "both", "--index-dir", index, "-q"
    )
    assert both.exit_code == 0, both.output
    out = _invoke(
        "query", "--id", "s3", "--target", "image", "--backend", "cavmae", "-k", "4", "--index-dir", index, "--json"
    )
    assert out.exit_code == 0, out.output
    [hits] = [r["hits"] for r in json.loads(out.stdout) if r["backend"] == "cavmae"]
    order = np.argsort(-(images @ audio[3]))[:4]
    assert [h["path"] for h in hits] == [f"{folder / 'image.cavmae.npy'}#{i}" for i in order]
    plain = _invoke("index", "--embeddings", folder, "--bridge", bridge_file, "--index-dir", tmp_path / "plain", "-q")
    assert plain.exit_code == 3 and "--backend cavmae or both" in plain.stderr


def test_moment_rows_carry_their_times(bridge_file, tmp_path) -> None:
    """rows.jsonl rows with start/end are moments of their source (a video's frames): found as time ranges,
    neighbours merged; a row with a start and no end is refused in one line naming it."""
    rng = np.random.default_rng(2)
    folder = tmp_path / "vectors"
    folder.mkdir()
    v, w, other = _unit(rng, 3)
    near = v + 0.05 * _unit(rng, 1)[0]
    np.save(folder / "image.clip.npy", np.stack([v, near, near, w, other]))
    rows = [{"source": "q.jpg"}, *({"source": "walk.mp4", "start": s, "end": s + 1.0} for s in (0.0, 1.0, 2.0))]
    rows.append({"source": "b.jpg"})
    (folder / "image.clip.rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    index = tmp_path / "index"
    result = _invoke("index", "--embeddings", folder, "--bridge", bridge_file, "--index-dir", index, "-q")
    assert result.exit_code == 0, result.output
    out = _invoke("query", "--id", "q.jpg", "--target", "image", "--index-dir", index, "--json")
    assert out.exit_code == 0, out.output
    hits = json.loads(out.stdout)[0]["hits"]
    # the two near frames merged into 0-2 s; the far frame 2-3 s a moment of its own
    assert [(h["path"], h["start"], h["end"]) for h in hits if h["path"] == "walk.mp4"] == [
        ("walk.mp4", 0.0, 2.0),
        ("walk.mp4", 2.0, 3.0),
    ]
    assert hits[0]["path"] == "walk.mp4" and hits[0]["score"] > 0.99
    rows[2] = {"source": "walk.mp4", "start": 1.0}
    (folder / "image.clip.rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = _invoke("index", "--embeddings", folder, "--index-dir", index, "-q")
    assert bad.exit_code == 1 and "image.clip.rows.jsonl:3: a moment needs start and end" in bad.stderr
