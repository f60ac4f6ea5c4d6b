"""The point-cloud preview drawing (no index, no encoder)."""

from __future__ import annotations

import numpy as np

from avsearch.media.preview import render_cloud


def test_nearer_points_are_drawn_over_farther_ones() -> None:
    # Three points on the line of sight through the centre fall on one pixel: the nearest must be seen.
    az, el = np.radians(35.0), np.radians(25.0)
    turn = np.array([[np.cos(az), 0, np.sin(az)], [0, 1, 0], [-np.sin(az), 0, np.cos(az)]])
    tilt = np.array([[1, 0, 0], [0, np.cos(el), -np.sin(el)], [0, np.sin(el), np.cos(el)]])
    view = tilt @ turn
    axis = view.T @ np.array([0.0, 0.0, 1.0])  # the world direction that maps to the viewer's depth axis
    line = np.stack([axis * t for t in (-0.9, 0.0, 0.9)]).astype(np.float32)
    picture = np.asarray(render_cloud(line, 64))
    centre = picture[31:34, 31:34].reshape(-1, 3)
    darkest = centre[np.argmin(centre.sum(axis=1))]
    assert tuple(darkest) == (30, 80, 190)  # the nearest point's colour, not the farther ones'


def test_preview_is_the_requested_size_and_shows_the_shape() -> None:
    rng = np.random.default_rng(0)
    sphere = rng.normal(size=(2000, 3)).astype(np.float32)
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    picture = np.asarray(render_cloud(sphere, 128))
    assert picture.shape == (128, 128, 3)
    drawn = picture.sum(axis=2) < 3 * 255
    assert drawn[64, 64] and not drawn[0, 0] and not drawn[127, 127]  # a disc in the middle, margins empty


def test_waveform_is_the_sounds_envelope() -> None:
    """A sound silent in its first half and loud in its second: a flat line on the left, ink from the top
    row to the bottom row on the right (scaled to its own peak)."""
    import numpy as np

    from avsearch.media.preview import render_waveform

    t = np.arange(16_000) / 8000.0
    wave = np.where(t >= 1.0, 0.2 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)
    picture = np.asarray(render_waveform(wave, 256).convert("L"))
    assert picture.shape == (128, 256)
    ink = picture < 128
    assert not ink[:60, :120].any() and not ink[68:, :120].any()  # silence: a flat line at the middle only
    assert ink[0, 140:].all() and ink[-1, 140:].all()  # the loud half spans the full height
    quiet = np.asarray(render_waveform(wave * 0.01, 256).convert("L"))
    assert np.array_equal(quiet, picture)  # scaled to its own peak
