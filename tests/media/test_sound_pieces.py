"""A query piece's sound is decoded alone (media/sound_pieces.py): the samples of the whole file decoded,
resampled and cut, without decoding the whole (a piece of a file over [audio] max_samples is answered)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avsearch.errors import DecodeError
from avsearch.media.audio import load_audio
from avsearch.media.config import AudioLimits, MediaConfig
from avsearch.media.sound_windows import audio_track
from avsearch.modalities import AUDIO
from avsearch.search.piece import Piece, _samples
from tests.media.videos import make_video

RANGES = [(0.0, 1.0), (1.3, 2.71), (3.0, None), (6.5, 9.0)]


def _cut(wave: np.ndarray, rate: int, start: float, end: float | None) -> np.ndarray:
    return wave[round(start * rate) : len(wave) if end is None else min(len(wave), round(end * rate))]


def _limit(monkeypatch: pytest.MonkeyPatch, samples: int) -> None:
    limits = MediaConfig(audio=AudioLimits(max_samples=samples))
    for module in ("audio", "sound_windows", "sound_pieces"):
        monkeypatch.setattr(f"avsearch.media.{module}.media_config", lambda: limits)


@pytest.mark.parametrize(("rate", "to"), [(11_025, 8_000), (8_000, 6_000), (6_000, 6_000)])
def test_a_recordings_piece_is_the_whole_decode_cut(tmp_path: Path, rate: int, to: int) -> None:
    path = tmp_path / "noise.wav"
    sf.write(path, 0.3 * np.random.default_rng(0).standard_normal((7 * rate, 2)), rate, subtype="FLOAT")
    whole = load_audio(path, to)
    for start, end in RANGES:
        got, want = _samples(Piece(path, AUDIO, start, end), to), _cut(whole, to, start, end)
        assert got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-6), (start, end)


def test_a_videos_piece_is_the_whole_track_cut(tmp_path: Path) -> None:
    path = make_video(tmp_path / "sound.mp4", seconds=12, video=False, tone=(0.5, 11.5))  # 44.1 kHz AAC
    whole = audio_track(path, 16_000)
    for start, end in [(0.0, 1.0), (5.3, 9.71), (10.0, None), (11.5, 30.0)]:
        got, want = _samples(Piece(path, AUDIO, start, end), 16_000), _cut(whole, 16_000, start, end)
        assert got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-6), (start, end)


def test_a_piece_of_a_file_too_long_to_decode_whole_is_answered(tmp_path: Path, monkeypatch) -> None:
    wav = tmp_path / "long.wav"
    sf.write(wav, 0.3 * np.sin(np.arange(8 * 8_000) / 3.0), 8_000)  # 64,000 frames
    video = make_video(tmp_path / "long.mp4", seconds=8, video=False, rate=8_000, tone=(0.0, 8.0))
    _limit(monkeypatch, 20_000)
    with pytest.raises(DecodeError, match="max_samples"):
        load_audio(wav, 8_000)
    with pytest.raises(DecodeError, match="max_samples"):
        audio_track(video, 8_000)
    for path in (wav, video):
        assert _samples(Piece(path, AUDIO, 5.0, 6.0), 8_000).shape == (8_000,)
        with pytest.raises(DecodeError, match="max_samples"):  # a piece is bounded as a file of its length
            _samples(Piece(path, AUDIO, 1.0, 7.0), 8_000)
