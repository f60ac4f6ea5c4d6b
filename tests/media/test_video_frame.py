"""media/video_frame.py: the frame on screen at a time, reached by seeking (tests/media/videos.py's video)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avsearch.errors import DecodeError
from avsearch.media.video_frame import frame_at
from tests.media.videos import GREY, RED, make_video


def _middle(picture) -> np.ndarray:  # noqa: ANN001 - PIL image
    pixels = np.asarray(picture, np.float32)
    return pixels[pixels.shape[0] // 2, pixels.shape[1] // 2]


def test_the_frame_on_screen_at_a_time_is_reached_by_seeking(tmp_path: Path) -> None:
    """A 30 s video at 10 fps with a keyframe every 2 s, its red square on from 24 to 26 s: the frame at
    24.0 s is red, at 23.9 s grey, and reaching it decodes about one group of pictures (20 frames), not
    the 240 before it."""
    video = make_video(
        tmp_path / "long.mp4", seconds=30.0, square=(24.0, 26.0), audio=False, options={"g": "20", "keyint_min": "20"}
    )
    stats: dict = {}
    square = frame_at(video, 24.0, stats=stats)
    assert np.abs(_middle(square) - RED).max() < 40
    assert square.size == (64, 48)
    assert stats["decoded"] <= 25, stats  # from the keyframe at 24 s (or 22 s): without the seek, 241
    assert np.abs(_middle(frame_at(video, 23.9)) - GREY).max() < 40  # the last frame before the square
    assert np.abs(_middle(frame_at(video, 99.0)) - GREY).max() < 40  # past the end: the last frame
    assert frame_at(video, 24.0, side=24).size == (32, 24)  # the shorter side bounded


def test_a_sound_only_file_has_no_frame(tmp_path: Path) -> None:
    sound = make_video(tmp_path / "sound.mp4", seconds=2.0, video=False, tone=(0.0, 1.0))
    with pytest.raises(DecodeError, match="no video stream"):
        frame_at(sound, 1.0)
