"""Audio decoding (formats, mono 48 kHz, bad files) and the deterministic 10 s windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avsearch.errors import DecodeError
from avsearch.media.audio import load_audio, make_windows


def _tone(seconds: float, rate: int, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.4 * np.sin(2 * np.pi * 440 * t)
    return np.stack([wave] * channels, axis=1).astype(np.float32)


@pytest.mark.parametrize(
    "ext,fmt,subtype",
    [
        ("wav", "WAV", "PCM_16"),
        ("flac", "FLAC", "PCM_16"),
        ("ogg", "OGG", "VORBIS"),
        ("mp3", "MP3", "MPEG_LAYER_III"),
    ],
)
def test_formats_decode_to_mono_48k(tmp_path: Path, ext: str, fmt: str, subtype: str) -> None:
    path = tmp_path / f"tone.{ext}"
    sf.write(path, _tone(1.0, 44_100), 44_100, format=fmt, subtype=subtype)
    wave = load_audio(path)
    assert wave.ndim == 1 and wave.dtype == np.float32
    assert abs(wave.shape[0] - 48_000) < 48_000 * 0.06  # mp3 adds encoder padding
    assert 0.3 < np.abs(wave).max() <= 1.0


def test_decoding_is_deterministic(tmp_path: Path) -> None:
    path = tmp_path / "tone.flac"
    sf.write(path, _tone(2.3, 22_050), 22_050)
    assert np.array_equal(load_audio(path), load_audio(path))


def test_empty_silent_and_undecodable_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), 48_000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros((48_000, 1), np.float32), 48_000)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(DecodeError, match="no samples"):
        load_audio(empty)
    with pytest.raises(DecodeError, match="silent"):
        load_audio(silent)
    with pytest.raises(DecodeError, match="junk.mp3"):
        load_audio(junk)
    with pytest.raises(DecodeError, match="no such file"):
        load_audio(tmp_path / "absent.wav")


def test_short_clip_is_repeat_padded() -> None:
    wave = np.arange(1, 4, dtype=np.float32)  # 3 samples into a window of 10
    win = make_windows(wave, 10, 5)
    assert win.shape == (1, 10)
    assert win[0].tolist() == [1, 2, 3, 1, 2, 3, 1, 2, 3, 0]


def test_long_clip_windows_cover_start_and_end() -> None:
    wave = np.arange(25, dtype=np.float32)
    win = make_windows(wave, 10, 5)
    assert win.shape == (3, 10)
    assert win[0, 0] == 0 and win[-1, -1] == 24  # first sample and last sample both seen


def test_very_long_clip_capped_evenly() -> None:
    wave = np.arange(1000, dtype=np.float32)
    win = make_windows(wave, 10, 4)
    assert win.shape == (4, 10)
    assert win[0, 0] == 0 and win[-1, -1] == 999
