"""Heat maps of proposal scores, and the picture with the heat map and the best box drawn over it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from avsearch.atomic import write_bytes
from avsearch.errors import ConfigError
from avsearch.localize.proposals import Box

# A perceptually ordered colour ramp (dark blue -> cyan -> yellow -> dark red), interpolated linearly.
_RAMP_AT = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_RAMP_RGB = np.array([[48, 18, 59], [70, 134, 251], [27, 229, 181], [250, 186, 57], [122, 4, 3]], np.float64)


def capped_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) scaled down, shape kept, to at most `max_pixels` pixels; unchanged when within."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def heat(
    boxes: Sequence[Box],
    scores: Sequence[float],
    width: int,
    height: int,
    mode: str = "max",
    floor: float | None = None,
) -> np.ndarray:
    """(height, width) float32 map in [0, 1] of how much each pixel looks like the sound's source.

    "max": each pixel takes the best score of the boxes holding it. "sum": the sum of the boxes holding
    it, each weighted by its score above `floor`. Either is rescaled to [0, 1], `floor` (default: the
    lowest score; Localization passes the whole-image score) mapping to 0 and anything below it too.
    """
    if mode not in ("max", "sum"):
        raise ConfigError(f"unknown heat-map mode {mode!r}; valid: max, sum")
    s = np.asarray(scores, np.float64)
    lowest = float(s.min()) if s.size else 0.0
    floor = lowest if floor is None or floor >= float(s.max(initial=lowest)) else min(max(floor, lowest), s.max())
    s = np.maximum(s, floor)
    acc = np.full((height, width), floor if mode == "max" else 0.0, np.float64)
    for box, score in zip(boxes, s, strict=True):
        x0, y0 = int(np.floor(box.x0)), int(np.floor(box.y0))
        x1, y1 = int(np.ceil(box.x1)), int(np.ceil(box.y1))
        cell = acc[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]
        if mode == "max":
            np.maximum(cell, score, out=cell)
        else:
            cell += score - floor
    low, high = (floor, float(s.max())) if mode == "max" else (0.0, float(acc.max()))
    if high - low <= 0:
        return np.zeros((height, width), np.float32)
    acc -= low  # in place: no temporaries the size of the map
    acc /= high - low
    return np.clip(acc, 0, 1, out=acc).astype(np.float32)


def colourise(values: np.ndarray) -> np.ndarray:
    """A [0, 1] map -> (H, W, 3) uint8 colours of the ramp."""
    v = np.clip(values, 0, 1)
    out = np.empty((*v.shape, 3), np.uint8)
    for c in range(3):  # a channel at a time: one float64 map alive, not three stacked
        out[..., c] = np.interp(v, _RAMP_AT, _RAMP_RGB[:, c]).round()
    return out


def overlay(
    image: Image.Image, heat_map: np.ndarray, best: Box | None, caption: str = "", alpha: float = 0.5
) -> Image.Image:
    """The picture blended with the coloured heat map, the best box outlined (white on black) and captioned."""
    base = image.convert("RGB")
    colours = Image.fromarray(colourise(heat_map)).resize(base.size, Image.BILINEAR)
    out = Image.blend(base, colours, float(np.clip(alpha, 0, 1)))
    if best is not None:
        draw = ImageDraw.Draw(out)
        width = max(2, round(min(out.size) / 150))
        corners = (best.x0, best.y0, best.x1 - 1, best.y1 - 1)
        draw.rectangle(corners, outline=(0, 0, 0), width=width + 2)
        draw.rectangle(corners, outline=(255, 255, 255), width=width)
        if caption:
            left, top = best.x0 + width + 2, best.y0 + width + 2
            text_box = draw.textbbox((left, top), caption)
            draw.rectangle((text_box[0] - 2, text_box[1] - 2, text_box[2] + 2, text_box[3] + 2), fill=(0, 0, 0))
            draw.text((left, top), caption, fill=(255, 255, 255))
    return out


def save_png(picture: Image.Image, path: str | Path) -> Path:
    """Write a PNG atomically (a reader never sees half a file)."""
    import io

    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    path = Path(path)
    write_bytes(path, buffer.getvalue())
    return path
