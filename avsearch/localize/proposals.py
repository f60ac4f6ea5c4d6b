"""Object proposals: boxes in a picture worth scoring against a sound.

The weight-free default is selective search (opencv-contrib's ximgproc) plus a multi-scale grid; a
detector (detector.py) or a boxes file (boxes_file.py) can stand in for both. Whatever the source, the
list is de-duplicated, capped, and always holds the whole image first (its score is the whole-image
match score). Boxes are [x0, y0, x1, y1] in pixels of the upright picture as the user sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from avsearch.errors import ConfigError
from avsearch.localize.config import ProposalConfig

log = logging.getLogger(__name__)

WHOLE = "whole"  # source name of the whole-image box


@dataclass(frozen=True)
class Box:
    """One proposal: corners in pixels (x1, y1 exclusive), where it came from, and a detector's label/score."""

    x0: float
    y0: float
    x1: float
    y1: float
    source: str  # "whole", "search", "grid", "detector", "file"
    label: str | None = None
    det_score: float | None = None

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    def iou(self, other: Box) -> float:
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def clipped(self, width: int, height: int) -> Box:
        """The box inside a width x height picture (corners clamped)."""
        x0, x1 = sorted((min(max(self.x0, 0.0), width), min(max(self.x1, 0.0), width)))
        y0, y1 = sorted((min(max(self.y0, 0.0), height), min(max(self.y1, 0.0), height)))
        return Box(x0, y0, x1, y1, self.source, self.label, self.det_score)

    def scaled(self, sx: float, sy: float) -> Box:
        return Box(self.x0 * sx, self.y0 * sy, self.x1 * sx, self.y1 * sy, self.source, self.label, self.det_score)

    def to_list(self) -> list[float]:
        return [round(self.x0, 2), round(self.y0, 2), round(self.x1, 2), round(self.y1, 2)]


# A proposal source: the upright picture -> boxes in its pixels (whole image, dedupe and cap are added after).
ProposalSource = Callable[[Image.Image], list[Box]]


def whole_image(width: int, height: int) -> Box:
    return Box(0.0, 0.0, float(width), float(height), WHOLE)


def grid_boxes(width: int, height: int, scales: Sequence[int]) -> list[Box]:
    """For each n in scales, the n x n cells of the picture, row by row (coarse scales first)."""
    boxes = []
    for n in scales:
        xs, ys = np.linspace(0, width, n + 1), np.linspace(0, height, n + 1)
        boxes += [
            Box(float(xs[i]), float(ys[j]), float(xs[i + 1]), float(ys[j + 1]), "grid")
            for j in range(n)
            for i in range(n)
        ]
    return boxes


def selective_search(image: Image.Image, mode: str = "fast", max_side: int = 500) -> list[Box]:
    """Selective search (Uijlings et al.) through opencv-contrib, in its own ranking order.

    The picture is resized so its longer side is at most `max_side` (the search is quadratic-ish in
    pixels); boxes come back in the picture's own pixels.
    """
    try:
        import cv2
    except ImportError as exc:  # opencv-contrib-python-headless is a declared dependency
        raise ConfigError(f"selective search needs opencv-contrib-python-headless ({exc})") from exc
    width, height = image.size
    scale = min(1.0, max_side / max(width, height))
    small = image if scale == 1.0 else image.resize((max(1, round(width * scale)), max(1, round(height * scale))))
    bgr = np.ascontiguousarray(np.asarray(small.convert("RGB"))[:, :, ::-1])
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(bgr)
    if mode == "quality":
        search.switchToSelectiveSearchQuality()
    else:
        search.switchToSelectiveSearchFast()
    rects = search.process()
    sx, sy = width / small.size[0], height / small.size[1]
    return [Box(float(x) * sx, float(y) * sy, float(x + w) * sx, float(y + h) * sy, "search") for x, y, w, h in rects]


def finalize(boxes: Sequence[Box], width: int, height: int, cfg: ProposalConfig) -> list[Box]:
    """Whole image first, then `boxes` in order: clipped, too-small ones dropped, near-duplicates (IoU above
    cfg.dedupe_iou with an earlier-kept box) dropped, at most cfg.max_boxes in all."""
    kept = [whole_image(width, height)]
    smallest = cfg.min_side * min(width, height)
    for box in boxes:
        if len(kept) >= cfg.max_boxes:
            break
        box = box.clipped(width, height)
        if box.source != "file" and min(box.x1 - box.x0, box.y1 - box.y0) < smallest:
            continue  # a user's own boxes are never judged too small
        if box.area <= 0 or any(box.iou(k) > cfg.dedupe_iou for k in kept):
            continue
        kept.append(box)
    return kept


def search_and_grid(cfg: ProposalConfig) -> ProposalSource:
    """The weight-free source: selective search's first cfg.search_boxes usable boxes, then the grid."""

    def propose(image: Image.Image) -> list[Box]:
        width, height = image.size
        smallest = cfg.min_side * min(width, height)
        found = [
            b
            for b in selective_search(image, cfg.search_mode, cfg.search_max_side)
            if min(b.x1 - b.x0, b.y1 - b.y0) >= smallest and b.area < 0.95 * width * height
        ]
        return found[: cfg.search_boxes] + grid_boxes(width, height, cfg.grid_scales)

    return propose
