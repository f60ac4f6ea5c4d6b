"""Proposals (selective search, grid, dedupe, cap), --boxes files, heat maps and the overlay picture."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avsearch.errors import ConfigError, InputError
from avsearch.localize.boxes_file import boxes_for, read_boxes
from avsearch.localize.config import ProposalConfig, load_localize_config
from avsearch.localize.heatmap import heat, overlay
from avsearch.localize.proposals import Box, finalize, grid_boxes, search_and_grid, selective_search


def test_grid_cells_tile_the_picture() -> None:
    boxes = grid_boxes(300, 200, (1, 2, 3))
    assert len(boxes) == 1 + 4 + 9
    cells3 = boxes[5:]
    assert sum(b.area for b in cells3) == pytest.approx(300 * 200)
    assert cells3[0].to_list() == [0, 0, 100, 66.67] and cells3[-1].to_list() == [200, 133.33, 300, 200]


def test_finalize_whole_image_first_dedupe_min_size_and_cap() -> None:
    cfg = ProposalConfig(max_boxes=4, dedupe_iou=0.9, min_side=0.1)
    a = Box(0, 0, 50, 50, "search")
    near_a = Box(0, 0, 50, 52, "search")  # IoU 0.96 with a: dropped
    tiny = Box(60, 60, 65, 90, "search")  # 5 px wide < 0.1 * 100: dropped
    outside = Box(-20, 50, 40, 130, "grid")  # clipped to the picture
    b, c = Box(50, 0, 100, 50, "grid"), Box(0, 50, 50, 100, "grid")
    kept = finalize([a, near_a, tiny, outside, b, c], 100, 100, cfg)
    assert kept[0].source == "whole" and kept[0].to_list() == [0, 0, 100, 100]
    assert kept[1:] == [a, Box(0, 50, 40, 100, "grid"), b]  # c is cut by the cap of 4
    # A user's own boxes are never judged too small.
    assert finalize([Box(1, 1, 3, 3, "file")], 100, 100, cfg)[1].source == "file"


def test_selective_search_finds_pasted_squares_in_picture_pixels() -> None:
    canvas = np.full((300, 400, 3), 128, np.uint8)
    canvas[40:140, 60:160] = (220, 30, 30)
    canvas[150:280, 250:380] = (30, 30, 220)
    picture = Image.fromarray(canvas)
    boxes = selective_search(picture, "fast", max_side=200)  # searched at half size, reported at full size
    best = max(boxes, key=lambda b: b.iou(Box(60, 40, 160, 140, "x")))
    assert best.iou(Box(60, 40, 160, 140, "x")) > 0.8
    assert max(b.iou(Box(250, 150, 380, 280, "x")) for b in boxes) > 0.8
    assert all(0 <= b.x0 < b.x1 <= 400 and 0 <= b.y0 < b.y1 <= 300 for b in boxes)
    cfg = replace(load_localize_config().proposals, search_boxes=5, grid_scales=(2,))
    found = search_and_grid(cfg)(picture)
    assert [b.source for b in found].count("grid") == 4 and 0 < [b.source for b in found].count("search") <= 5


def test_config_rejects_unknown_keys_and_choices(tmp_path: Path) -> None:
    bad = tmp_path / "localize.toml"
    bad.write_text('[proposals]\nsource = "glip"\n')
    with pytest.raises(ConfigError, match="glip"):
        load_localize_config(bad)
    bad.write_text("[proposals]\nmax_box = 3\n")
    with pytest.raises(ConfigError, match="max_box"):
        load_localize_config(bad)


def test_boxes_file_layouts_and_errors(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps([[1, 2, 30, 40, "dog"], {"box": [5, 5, 9, 9], "score": 0.5}]))
    boxes = read_boxes(one)
    assert boxes == [Box(1, 2, 30, 40, "file", "dog"), Box(5, 5, 9, 9, "file", None, 0.5)]
    per = tmp_path / "per.json"
    per.write_text(json.dumps({"park.jpg": [[0, 0, 10, 10]]}))
    assert boxes_for(read_boxes(per), "/photos/park.jpg", per)[0].to_list() == [0, 0, 10, 10]
    with pytest.raises(InputError, match="no boxes for 'other.jpg'"):
        boxes_for(read_boxes(per), "other.jpg", per)
    for text, reason in (("[[0, 0, 10]]", "x0, y0, x1, y1"), ("[[5, 0, 1, 10]]", "no area"), ("{", "not a JSON")):
        one.write_text(text)
        with pytest.raises(InputError, match=reason):
            read_boxes(one)


def test_heat_max_and_sum_by_hand() -> None:
    boxes = [Box(0, 0, 4, 4, "whole"), Box(0, 0, 2, 2, "x"), Box(1, 1, 3, 3, "x")]
    scores = [0.1, 0.5, 0.3]
    hm = heat(boxes, scores, 4, 4, "max")  # rescaled so 0.1 -> 0 and 0.5 -> 1
    assert hm[0, 0] == 1.0 and hm[1, 1] == 1.0 and hm[2, 2] == pytest.approx(0.5) and hm[3, 3] == 0.0
    hs = heat(boxes, scores, 4, 4, "sum")  # weights above the lowest: 0, 0.4, 0.2; peak 0.6 at (1, 1)
    assert hs[1, 1] == 1.0 and hs[0, 0] == pytest.approx(0.4 / 0.6) and hs[2, 2] == pytest.approx(0.2 / 0.6)
    assert hs[3, 3] == 0.0
    # With the whole-image score as the floor, boxes no better than the whole picture stay cold.
    hf = heat(boxes, [0.3, 0.5, 0.3], 4, 4, "max", floor=0.3)
    assert hf[0, 0] == 1.0 and hf[2, 2] == 0.0 and hf[3, 3] == 0.0
    # Two boxes of 0.2 overlapping at (row 0, col 3): max keeps 0.2 -> 0.25; a sum would give 0.5.
    two = [*boxes, Box(3, 0, 4, 1, "x"), Box(3, 0, 4, 2, "x")]
    assert heat(two, [*scores, 0.2, 0.2], 4, 4, "max")[0, 3] == pytest.approx(0.25)


def test_overlay_draws_the_best_box(tmp_path: Path) -> None:
    picture = Image.new("RGB", (120, 90), (0, 128, 0))
    best = Box(20, 10, 80, 60, "x")
    hm = heat([Box(0, 0, 120, 90, "whole"), best], [0.0, 1.0], 120, 90)
    out = np.asarray(overlay(picture, hm, best, "0.900", alpha=0.5))
    assert out.shape == (90, 120, 3)
    assert tuple(out[35, 20]) == (255, 255, 255)  # the white outline on the box's left edge
    assert not np.array_equal(out[85, 110], out[40, 60])  # hot inside, cold outside
