"""Videos are told by content (media/detect.py + media/signatures.py): a video container is a video
whatever its brand or name, a sound or picture in a video's name is what it holds, text named .mp4 fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avsearch.media.detect import detect
from avsearch.modalities import AUDIO, IMAGE, VIDEO
from tests.media.videos import make_video


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("detect_videos")
    return {
        "mp4": make_video(folder / "a.mp4", seconds=2, square=None, tone=None),
        "sound_only": make_video(folder / "s.mp4", seconds=2, video=False, tone=None),
        "mkv": make_video(folder / "b.mkv", seconds=2, audio=False, square=None),
        "avi": make_video(folder / "c.avi", seconds=2, audio=False, square=None, codec="mjpeg"),
    }


def test_videos_by_content_whatever_the_name(made, tmp_path):
    assert detect(made["mp4"]) == detect(made["sound_only"]) == type(detect(made["mp4"]))(VIDEO, "mp4")
    assert detect(made["mkv"]).kind == VIDEO and detect(made["avi"]) == type(detect(made["mp4"]))(VIDEO, "avi")
    renamed = tmp_path / "clip.jpg"  # an MP4 named as a picture is a video
    shutil.copy(made["mp4"], renamed)
    assert detect(renamed).kind == VIDEO and not detect(renamed).failed
    heif_brand = tmp_path / "heif.mp4"  # an ISO file with a picture's brand is not a video
    heif_brand.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    assert detect(heif_brand).kind == IMAGE


def test_what_a_video_name_holds_decides(tmp_path):
    picture = tmp_path / "picture.mp4"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(picture, format="PNG")
    assert detect(picture).kind == IMAGE and not detect(picture).failed
    sound = tmp_path / "sound.mov"
    sf.write(sound, np.zeros(800, np.float32), 8000, format="WAV")
    assert detect(sound).kind == AUDIO
    text = tmp_path / "notes.mp4"
    text.write_text("not a film at all\n")
    found = detect(text)
    assert (found.kind, found.reason) == (VIDEO, "not a .mp4 video: it holds text")
    empty = tmp_path / "empty.webm"
    empty.touch()
    assert (detect(empty).kind, detect(empty).reason) == (VIDEO, "empty file (0 bytes)")


def test_matroska_named_as_a_sound_stays_a_sound(made, tmp_path):
    mka = tmp_path / "music.mka"
    shutil.copy(made["mkv"], mka)
    assert detect(mka).kind == AUDIO
