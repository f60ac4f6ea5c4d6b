"""Issue 6 item 5 end to end: `embed --config pointcloud_text` writes the 3D bridge's four arrays
(images in both CLIP and ULIP space with the same rows), `train` fits the bridge on them, and
`classify3d` uses the trained bridge. Random weights made by the tests (see conftest)."""

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from avsearch.bridge.io import load_bridge
from avsearch.cli import app
from avsearch.encoders.registry import load_encoder
from avsearch.media.pointcloud import load_pointcloud

runner = CliRunner()


def test_embed_train_classify_with_the_pointcloud_text_config(
    ulip_weights_dir, ulip_encoder, make_cloud, tmp_path, monkeypatch
):
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "cache"))
    media = tmp_path / "media"
    media.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(media / f"img{i}.png")
        np.save(media / f"shape{i}.npy", make_cloud(600, i))
    captions = tmp_path / "captions.txt"
    captions.write_text("a chair\na wooden table\na small lamp\n")
    out = tmp_path / "emb"
    result = runner.invoke(
        app,
        [
            "embed",
            str(media),
            "--captions",
            str(captions),
            "--out",
            str(out),
            "--config",
            "pointcloud_text",
            "--weights-dir",
            str(ulip_weights_dir),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    shapes = {p.name: np.load(p).shape for p in out.glob("*.npy")}
    assert shapes == {
        "image.clip.npy": (4, 512),
        "image.ulip.npy": (4, 512),
        "text.clip.npy": (3, 512),
        "pointcloud.ulip.npy": (4, 512),
    }
    rows = [
        [json.loads(line)["source"] for line in (out / f"image.{s}.rows.jsonl").read_text().splitlines()]
        for s in ("clip", "ulip")
    ]
    assert rows[0] == rows[1]  # the overlap arrays pair up row by row

    bridge = tmp_path / "3d.safetensors"
    result = runner.invoke(
        app,
        [
            "train",
            "-c",
            "pointcloud_text",
            "-e",
            str(out),
            "-o",
            str(bridge),
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output

    result = runner.invoke(
        app,
        [
            "classify3d",
            str(media / "shape0.npy"),
            "--bridge",
            str(bridge),
            "--weights-dir",
            str(ulip_weights_dir),
            "--labels",
            str(_labels(tmp_path)),
            "--prompts",
            str(_prompts(tmp_path)),
            "-k",
            "2",
            "--json",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["file"] == str(media / "shape0.npy")

    # The same scores computed here, outside classify3d: the cloud through ULIP and the trained bridge's
    # ULIP side; each label's prompts through CLIP, averaged as unit vectors in CLIP space and projected
    # once through the CLIP side (the default ensemble, configs/prompts_3d.toml); cosines, best first.
    trained = load_bridge(bridge)
    cloud = ulip_encoder.encode_points(load_pointcloud(media / "shape0.npy")[None])
    shape = trained.project("ulip", cloud, modality="pointcloud")[0]
    clip = load_encoder("clip-vit-b-32-openai", ("text",), ulip_weights_dir, "cpu")
    labels = ["chair", "table", "lamp"]
    templates = ["a photo of a {}.", "a 3D model of a {}."]
    native = clip.encode_text([t.format(label) for label in labels for t in templates]).astype(np.float64)
    native = native / np.linalg.norm(native, axis=1, keepdims=True)
    label_vectors = trained.project("clip", native.reshape(3, 2, -1).mean(axis=1), modality="text")
    scores = label_vectors @ shape / np.linalg.norm(label_vectors, axis=1) / np.linalg.norm(shape)
    best = np.argsort(-scores)[:2]
    assert [p["label"] for p in row["top"]] == [labels[i] for i in best]
    np.testing.assert_allclose([p["score"] for p in row["top"]], scores[best], atol=2e-5)


def _prompts(tmp_path):
    path = tmp_path / "prompts.toml"
    path.write_text('templates = ["a photo of a {}.", "a 3D model of a {}."]\n')
    return path


def _labels(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("chair\ntable\nlamp\n")
    return path
