"""Point clouds in the index, with the REAL ULIP-2 PointBERT, CLIP and CLAP architectures on random
weights the tests make, an audio-visual and a 3D bridge (random): every 3D route of `avsearch query`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.search.engine import SearchEngine
from avsearch.store.index import Index
from avsearch.store.manifest import load_manifest
from tests.search.conftest import make_3d_bridge
from tests.search.media_factory import write_cloud, write_image
from tests.weights_factory import make_ulip_weights

runner = CliRunner()


@pytest.fixture(scope="module")
def three_d(tmp_path_factory, av_weights_dir, bridge_file):
    weights = tmp_path_factory.mktemp("weights3d")
    for item in av_weights_dir.iterdir():  # CLIP + CLAP from the shared folder, plus ULIP-2 here
        (weights / item.name).symlink_to(item)
    make_ulip_weights(weights)  # random_ulip_state(), saved (a copy when this session made it already)
    bridge3d = make_3d_bridge(tmp_path_factory.mktemp("b3d") / "3d.safetensors")
    root = tmp_path_factory.mktemp("media3d")
    for i in range(3):
        write_image(root / f"img{i}.png", i)
    clouds = [write_cloud(root / f"shape{i}.npy", i) for i in range(3)]
    index = tmp_path_factory.mktemp("index3d")
    args = ["index", root, "--index-dir", index, "--bridge", bridge_file, "--bridge", bridge3d]
    result = runner.invoke(app, [str(a) for a in [*args, "--weights-dir", weights, "--quiet"]])
    assert result.exit_code == 0, result.output
    return root, index, weights, clouds


def test_pointclouds_are_indexed_with_both_bridges(three_d) -> None:
    _, index, _, _ = three_d
    m = load_manifest(index)
    assert set(m.bridges) == {"audio_visual", "pointcloud_text"}
    assert m.modalities["pointcloud"].encoder == "ulip2-pointbert"
    assert m.shared_dims("image") == {"proj_audio_visual": 512, "proj_pointcloud_text": 512}
    assert m.shared_dims("pointcloud") == {"proj_pointcloud_text": 512}


def test_every_3d_route(three_d) -> None:
    root, index, weights, clouds = three_d
    engine = SearchEngine(Index.open(index, weights_dir=weights, device="cpu"))
    p2i = engine.search_file(clouds[0], "pointcloud", "image", k=3)
    assert p2i[0].space == "shared:pointcloud_text" and len(p2i[0].hits) == 3
    p2p = engine.search_file(clouds[1], "pointcloud", "pointcloud", k=3)
    assert p2p[0].space == "ulip" and p2p[0].hits[0].path == str(clouds[1])
    t2p = engine.search_text("a chair", "pointcloud", k=2)  # CLIP text through the 3D bridge
    assert t2p[0].space == "shared:pointcloud_text" and len(t2p[0].hits) == 2
    i2all = engine.search_file(root / "img1.png", "image", "all", k=1)
    assert [(r.target, r.space, len(r.hits)) for r in i2all] == [
        ("image", "clip", 1),
        ("audio", "shared:audio_visual", 0),  # the AV bridge makes audio a target; none is indexed here
        ("pointcloud", "shared:pointcloud_text", 1),
    ]

    out = runner.invoke(
        app,
        [
            "query",
            "--image",
            str(root / "img0.png"),
            "--target",
            "pointcloud",
            "--json",
            "--index-dir",
            str(index),
            "--weights-dir",
            str(weights),
        ],
    )
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res[0]["space"] == "shared:pointcloud_text" and {h["path"] for h in res[0]["hits"]} == set(map(str, clouds))
    cli = runner.invoke(
        app,
        [
            "query",
            "--pointcloud",
            str(clouds[2]),
            "--paths-only",
            "-k",
            "1",
            "--index-dir",
            str(index),
            "--weights-dir",
            str(weights),
        ],
    )
    assert cli.exit_code == 0 and cli.stdout.splitlines()[0] == str(clouds[2])
