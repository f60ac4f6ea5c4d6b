"""Audio decoding: a file -> mono float32 waveform at a target rate, and fixed 10 s windows.

Decoding uses soundfile (libsndfile: wav, flac, ogg/vorbis/opus, mp3, aiff, ...) and falls back to
librosa/audioread (ffmpeg or the platform decoders, where installed) for other containers. Whether a
file is a sound at all is decided by its content, as everywhere (media/detect.py).
Resampling uses soxr (librosa's default "soxr_hq"), which is deterministic, so one file always gives
the same samples.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path

import numpy as np

from avsearch.errors import DecodeError
from avsearch.media.detect import require
from avsearch.modalities import AUDIO

log = logging.getLogger(__name__)

# A waveform whose peak is below one 16-bit step is silence to CLAP (it quantises input to int16).
SILENCE_PEAK = 1.0 / 32767.0


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """(samples, channels) float32 and the file's sample rate."""
    import soundfile as sf

    try:
        # bytes, not str: soundfile encodes a str path strictly and fails on non-UTF-8 file names
        data, rate = sf.read(os.fsencode(path), dtype="float32", always_2d=True)
        return data, int(rate)
    except sf.LibsndfileError as sf_exc:
        first_error = sf_exc
    except RuntimeError as sf_exc:  # older soundfile raises RuntimeError
        first_error = sf_exc
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns when it falls back to audioread
            mono, rate = librosa.load(str(path), sr=None, mono=True)
        return mono.astype(np.float32)[:, None], int(rate)
    except Exception as exc:
        raise DecodeError(f"{path}: not a decodable audio file ({first_error})") from exc


def load_audio(path: Path | str, sample_rate: int = 48_000) -> np.ndarray:
    """Decode `path` to a mono float32 waveform (T,) in [-1, 1] at `sample_rate` Hz.

    Raises DecodeError naming the file when it is missing, not a sound (by content: media/detect.py),
    undecodable, empty, non-finite or silent.
    """
    path = Path(path)
    require(path, AUDIO)
    data, rate = _decode(path)
    if data.size == 0 or data.shape[0] == 0:
        raise DecodeError(f"{path}: audio file holds no samples")
    wave = data.mean(axis=1, dtype=np.float64).astype(np.float32)  # down-mix channels
    if not np.isfinite(wave).all():
        raise DecodeError(f"{path}: audio holds NaN or infinite samples")
    if rate != sample_rate:
        import librosa

        wave = librosa.resample(wave, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
        wave = np.ascontiguousarray(wave, dtype=np.float32)
    if wave.size == 0:
        raise DecodeError(f"{path}: audio too short to resample to {sample_rate} Hz")
    if float(np.abs(wave).max()) < SILENCE_PEAK:
        raise DecodeError(f"{path}: audio is silent (peak below one 16-bit step)")
    return np.clip(wave, -1.0, 1.0)


def make_windows(wave: np.ndarray, window: int, max_windows: int) -> np.ndarray:
    """Cut a waveform (T,) into fixed windows (W, window) float32, deterministically.

    - T <= window: one window, the clip repeated whole as many times as fits, then zero-padded
      (laion_clap's "repeatpad").
    - T > window: W = min(ceil(T / window), max_windows) windows with evenly spaced starts from 0 to
      T - window, so together they cover the whole clip (the last window ends at the last sample) and
      very long clips are sampled evenly instead of cut off.
    """
    n = int(wave.shape[0])
    if n == 0:
        raise ValueError("empty waveform")
    if n <= window:
        reps = window // n
        out = np.zeros(window, dtype=np.float32)
        out[: reps * n] = np.tile(wave, reps)
        return out[None, :]
    count = min(math.ceil(n / window), max_windows)
    starts = np.linspace(0, n - window, count).round().astype(np.int64)
    return np.stack([wave[s : s + window] for s in starts]).astype(np.float32, copy=False)
