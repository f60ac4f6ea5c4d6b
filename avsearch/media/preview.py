"""Point clouds and sounds drawn as small pictures (thumbnails in the server, previews in HTML reports)."""

from __future__ import annotations

import numpy as np
from PIL import Image

_VIEW = (np.radians(35.0), np.radians(25.0))  # azimuth, elevation of the point-cloud view
_DOT = ((0, 0), (1, 0), (0, 1), (1, 1))  # each point drawn as a 2x2 dot
_NEAR, _FAR = np.array([30, 80, 190], np.float32), np.array([205, 215, 235], np.float32)


def render_cloud(points: np.ndarray, size: int = 256) -> Image.Image:
    """An orthographic view of (N, 3) points (centred, radius <= 1) from above and to the side, nearer
    points darker and drawn over farther ones: (size, size) RGB."""
    az, el = _VIEW
    turn = np.array([[np.cos(az), 0, np.sin(az)], [0, 1, 0], [-np.sin(az), 0, np.cos(az)]], np.float32)
    tilt = np.array([[1, 0, 0], [0, np.cos(el), -np.sin(el)], [0, np.sin(el), np.cos(el)]], np.float32)
    p = np.asarray(points, np.float32) @ turn.T @ tilt.T
    margin = max(2, size // 16)
    scale = (size - 2 - 2 * margin) / 2.0
    cols = np.rint((p[:, 0] + 1.0) * scale + margin).astype(np.int64)
    rows = np.rint((1.0 - p[:, 1]) * scale + margin).astype(np.int64)
    depth = p[:, 2]  # larger = nearer the viewer
    spread = float(np.ptp(depth)) or 1.0
    nearness = (depth - depth.min()) / spread
    pixel = np.concatenate(
        [np.clip(rows + dy, 0, size - 1) * size + np.clip(cols + dx, 0, size - 1) for dx, dy in _DOT]
    )
    near = np.tile(nearness, len(_DOT))
    order = np.argsort(-near, kind="stable")  # nearest first: np.unique keeps the first of each pixel
    pixel, near = pixel[order], near[order]
    first = np.unique(pixel, return_index=True)[1]
    canvas = np.full((size * size, 3), 255, np.float32)
    canvas[pixel[first]] = _FAR + (_NEAR - _FAR) * near[first, None]
    return Image.fromarray(canvas.reshape(size, size, 3).astype(np.uint8), mode="RGB")


_WAVE_INK, _WAVE_AXIS = np.array([30, 80, 190], np.uint8), np.array([215, 220, 232], np.uint8)


def render_waveform(wave: np.ndarray, size: int = 256) -> Image.Image:
    """A sound's waveform as its min/max envelope, one column per slice of the samples, on white: (size,
    size // 2) RGB. Scaled to the sound's own peak, so quiet and loud sounds are both readable."""
    width, height = size, max(8, size // 2)
    wave = np.asarray(wave, np.float32).ravel()
    if wave.size < width:  # fewer samples than columns: repeat each sample across its columns
        wave = np.repeat(wave, -(-width // max(wave.size, 1)))
    edges = np.linspace(0, wave.size, width + 1).astype(np.int64)
    low = np.minimum.reduceat(wave, edges[:-1])
    high = np.maximum.reduceat(wave, edges[:-1])
    peak = max(float(np.abs(wave).max()), 1e-9)
    middle = (height - 1) / 2.0
    top = np.clip(np.rint(middle - high / peak * middle), 0, height - 1).astype(np.int64)
    bottom = np.clip(np.rint(middle - low / peak * middle), 0, height - 1).astype(np.int64)
    canvas = np.full((height, width, 3), 255, np.uint8)
    canvas[int(round(middle)), :] = _WAVE_AXIS
    rows = np.arange(height)[:, None]
    canvas[(rows >= top[None, :]) & (rows <= bottom[None, :])] = _WAVE_INK
    return Image.fromarray(canvas, mode="RGB")
