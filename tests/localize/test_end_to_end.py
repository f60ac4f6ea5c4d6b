"""Localisation and matching end to end on real CLIP and CLAP architectures (random weights) and a bridge
built so the right answers are known (tests/localize/synthetic.py says how)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.localize.config import load_localize_config
from avsearch.localize.pipeline import Localizer, get_localizer
from avsearch.localize.proposals import Box, grid_boxes
from tests.fixture_guard import unchanged
from tests.localize.synthetic import SIDE, World, build_world, link_av_weights, make_detector_weights

runner = CliRunner()
pytestmark = pytest.mark.slow  # loads CLIP and CLAP (random weights) and embeds about 40 crops on CPU


@pytest.fixture(scope="module")
def world(av_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("localize")
    made = build_world(root / "media", link_av_weights(av_weights_dir, root / "weights"))
    with unchanged(root, "the localisation world (media and weights)"):
        yield made


def own_weights(world: World, folder: Path) -> Path:
    """A weights folder of the test's own: links to the world's files, so a file added there stays there."""
    folder.mkdir()
    for entry in world.weights.iterdir():
        (folder / entry.name).symlink_to(entry.resolve())
    return folder


@pytest.fixture(scope="module")
def cells_file(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --boxes file giving each scene four cells of its 3 x 3 grid: its two patches and two empty cells."""
    path = tmp_path_factory.mktemp("cells") / "cells.json"
    cells = [b.to_list() for b in grid_boxes(SIDE, SIDE, (3,))]
    per_scene = {}
    for scene, placed in zip(world.scenes, world.placements, strict=True):
        empty = [c for c in cells if tuple(c) not in placed.values()][:2]
        per_scene[scene.name] = [list(b) for b in placed.values()] + empty
    path.write_text(json.dumps(per_scene))
    return path


def _inside(box: Box, target: tuple[int, int, int, int]) -> bool:
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    return target[0] <= cx < target[2] and target[1] <= cy < target[3]


def test_search_proposals_find_the_sounding_patch(world: World) -> None:
    cfg = load_localize_config()
    small = replace(cfg, proposals=replace(cfg.proposals, max_boxes=14, search_boxes=4, grid_scales=(3,)))
    loc = Localizer(weights_dir=world.weights, device="cpu", proposals="search", config=small)
    assert loc.bridge_path == world.weights / "clap_clip.pt"  # the published name, from the weights folder
    for s in (0,):
        for k, target in world.placements[s].items():
            found = loc.localize(world.sounds[k], world.scenes[s])
            assert found.proposal_source.startswith("selective search") and found.proposals[0].rank == 1
            assert _inside(found.best.box, target), (s, k, found.best.box, target)
            assert found.best.score > 0.99 and found.best.score >= found.proposals[1].score
            assert found.whole_image_score == next(p.score for p in found.proposals if p.box.source == "whole")


def test_exact_patch_box_scores_one(world: World, cells_file: Path) -> None:
    loc = get_localizer(None, world.weights, "cpu", None)
    from avsearch.localize.pipeline import load_boxes

    for k, target in world.placements[0].items():
        found = loc.localize(world.sounds[k], world.scenes[0], load_boxes(cells_file, world.scenes[0]))
        assert found.best.box.to_list() == list(target)  # the crop is pixel-equal to the patch file
        assert found.best.score == pytest.approx(1.0, abs=1e-4)
        assert len(found.proposals) == 5 and found.proposals[1].score < found.best.score - 1e-4


def test_cli_localize_json_and_heat_map(world: World, cells_file: Path, tmp_path: Path) -> None:
    png = tmp_path / "heat.png"
    k, target = next(iter(world.placements[0].items()))
    args = ["localize", "--audio", str(world.sounds[k]), "--image", str(world.scenes[0]), "--out", str(png)]
    args += ["--boxes", str(cells_file), "--weights-dir", str(world.weights), "--device", "cpu", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["best"]["box"] == list(target) and payload["proposal_count"] == 5
    assert payload["proposals"][0] == payload["best"] and payload["size"] == [SIDE, SIDE]
    picture = np.asarray(Image.open(png))
    assert picture.shape == (SIDE, SIDE, 3)
    x0, y0, x1, y1 = target
    assert tuple(picture[(y0 + y1) // 2, x0 + 1]) == (255, 255, 255)  # the best box's outline


def test_cli_match_true_pairs_above_shuffled(world: World, cells_file: Path) -> None:
    def match(k: int, s: int, *extra: str) -> dict:
        args = ["match", "--audio", str(world.sounds[k]), "--image", str(world.scenes[s]), "--boxes", str(cells_file)]
        result = runner.invoke(app, [*args, "--weights-dir", str(world.weights), "--device", "cpu", "--json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    pairs = [(k, s) for s in range(len(world.scenes)) for k in range(len(world.sounds))]
    scores = {(k, s): match(k, s)["confidence"] for k, s in pairs}
    true = [v for (k, s), v in scores.items() if k in world.placements[s]]
    shuffled = [v for (k, s), v in scores.items() if k not in world.placements[s]]
    assert min(true) > max(shuffled)
    first = match(0, 0)
    assert first["threshold_source"].startswith("default") and "no calibration" in first["threshold_source"]
    assert match(0, 0, "--threshold", str(max(shuffled)))["matches"] is True
    args = ["match", "--audio", str(world.sounds[0]), "--image", str(world.scenes[0]), "--boxes", str(cells_file)]
    text = runner.invoke(app, [*args, "--weights-dir", str(world.weights), "--device", "cpu"]).stdout
    assert "configs/localize.toml [match]; uncalibrated: the bridge holds no calibration" in text  # not eaten as markup
    k_out = next(k for k in range(len(world.sounds)) if k not in world.placements[0])
    assert match(k_out, 0, "--threshold", str(min(true)))["matches"] is False


def test_cli_match_takes_the_bridge_calibration(world: World, cells_file: Path, tmp_path: Path) -> None:
    """A calibration stored with the bridge (here a released .pt: its sidecar) sets the threshold (its 0.5
    level) and the probability; the config's 0.3 applies only without one."""
    from avsearch.bridge.calibrate import with_calibration
    from avsearch.bridge.confidence import fit_calibration
    from avsearch.bridge.io import open_bridge, save_calibrations

    bridge_copy = tmp_path / "clap_clip.pt"
    shutil.copy(world.weights / "clap_clip.pt", bridge_copy)
    rng = np.random.default_rng(0)
    calibration = fit_calibration(rng.normal(0.8, 0.05, 200), rng.normal(0.2, 0.05, 2000), "200 real pairs")
    save_calibrations(bridge_copy, with_calibration(open_bridge(bridge_copy), ("audio", "image"), calibration))
    args = ["match", "--audio", str(world.sounds[0]), "--image", str(world.scenes[0]), "--boxes", str(cells_file)]
    args += ["--bridge", str(bridge_copy), "--weights-dir", str(world.weights), "--device", "cpu", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["threshold"] == pytest.approx(calibration.score_at_50)
    assert answer["threshold"] != pytest.approx(0.3, abs=0.01)
    assert answer["threshold_source"] == "bridge calibration (from 200 real pairs)"
    assert answer["probability"] == pytest.approx(float(calibration.probability(answer["confidence"])), abs=1e-4)


def test_cli_eval_localize_and_counterfactual(world: World, cells_file: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"  # the world's pictures and sounds, and annotations.json beside them
    data.mkdir()
    for file in [*world.scenes, *world.sounds]:
        (data / file.name).symlink_to(file)
    rows = []
    for s, scene in enumerate(world.scenes):
        for k in range(len(world.sounds)):
            box = world.placements[s].get(k)
            rows.append({"image": scene.name, "audio": world.sounds[k].name, "boxes": [list(box)] if box else []})
    (data / "annotations.json").write_text(json.dumps(rows))
    common = ["--data", str(data), "--boxes", str(cells_file), "--weights-dir", str(world.weights), "--device", "cpu"]
    result = runner.invoke(app, ["eval", "localize", *common, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"n": 8, "ciou": 100.0, "auc": 100.0, "mean_ciou": 100.0}
    result = runner.invoke(app, ["eval", "counterfactual", *common, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # A perfect ranking: Max-F1 100; SLAVC's AP (the default protocol) leaves out the largest threshold and
    # counts area from the recall at the next one, so it reads 100 * (1 - t/8) with t the positives that the
    # next threshold already holds: which of the positives' confidences (all ~1.0) tie exactly depends on the
    # CPU's float rounding (t = 2 on some, 4 on AVX-512 ones), the multiple of 1/8 does not
    tied = (1 - report["ap"] / 100) * 8
    assert report["max_f1"] == 100.0 and 1 <= round(tied) <= 7 and abs(tied - round(tied)) < 1e-9
    assert (report["positives"], report["negatives"]) == (8, 8)
    assert 0.99 < report["threshold_at_max_f1"] <= 1.0001


def test_missing_weights_is_one_line(tmp_path: Path, world: World) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["match", "--audio", str(world.sounds[0]), "--image", str(world.scenes[0]), "--weights-dir", str(empty)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model weights clap_clip.pt not found" in lines[0]
    result = runner.invoke(
        app,
        [
            "localize",
            "--audio",
            str(tmp_path / "no.wav"),
            "--image",
            str(world.scenes[0]),
            "--weights-dir",
            str(world.weights),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1 and "no such audio file" in result.stderr


def test_detector_proposals_from_the_published_file(world: World, tmp_path: Path) -> None:
    cfg = load_localize_config()
    small = replace(cfg, detector=replace(cfg.detector, min_size=256, max_size=256, score_threshold=0.0))
    weights = own_weights(world, tmp_path / "weights")
    assert Localizer(weights_dir=weights, device="cpu", config=small)._source_name.startswith("selective")
    make_detector_weights(weights)
    loc = Localizer(weights_dir=weights, device="cpu", config=small)  # auto: the file is there now
    assert loc._source_name == "detector fasterrcnn_resnet50_fpn_v2"
    boxes = loc._source(Image.open(world.scenes[0]).convert("RGB"))
    assert boxes and all(b.source == "detector" and b.label and b.det_score is not None for b in boxes)
    assert [b.det_score for b in boxes] == sorted((b.det_score for b in boxes), reverse=True)
    assert all(0 <= b.x0 <= b.x1 <= SIDE and 0 <= b.y0 <= b.y1 <= SIDE for b in boxes)


def test_crops_embed_like_whole_pictures(world: World, tmp_path: Path) -> None:
    """A crop's vector is the vector of the same pixels saved as a picture file (non-square, off-grid boxes)."""
    from avsearch.encoders.registry import load_encoder
    from avsearch.localize.crops import CropEmbedder

    clip = load_encoder("clip-vit-b-32-openai", ("image",), world.weights, "cpu")
    scene = Image.open(world.scenes[1]).convert("RGB")
    boxes = [Box(10.4, 20.6, 300.2, 140.0, "x"), Box(200, 5, 260, 380, "x"), Box(0, 0, SIDE, SIDE, "whole")]
    files = []
    for i, b in enumerate(boxes):
        files.append(tmp_path / f"crop{i}.png")
        scene.crop((int(b.x0), int(b.y0), int(np.ceil(b.x1)), int(np.ceil(b.y1)))).save(files[-1])
    got = CropEmbedder(clip, batch=2).embed(scene, boxes)
    want = clip.encode_files("image", files)
    assert np.allclose(np.sum(got * want, axis=1), 1.0, atol=1e-5)


def test_eval_without_annotations_is_one_line(world: World, tmp_path: Path) -> None:
    """Both eval commands on a folder with neither annotations.json nor vggss.json, or with a broken one."""
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "annotations.json").write_text("[{not json")
    for data, words in ((tmp_path, "no annotations.json or vggss.json"), (tmp_path / "broken", "not a JSON")):
        for kind in ("localize", "counterfactual"):
            args = ["eval", kind, "--data", str(data), "--weights-dir", str(world.weights), "--device", "cpu"]
            result = runner.invoke(app, args)
            lines = result.stderr.strip().splitlines()
            assert result.exit_code == 1 and len(lines) == 1 and words in lines[0], (kind, result.output)
