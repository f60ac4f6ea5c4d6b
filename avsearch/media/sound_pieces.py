"""A piece [start, end] of a recording or of a video's sound, decoded alone (a query piece:
`avsearch query --audio long.wav --start 60 --end 70`).

Only the piece and a short margin on each side are read (soundfile seeks to a frame; PyAV seeks the
container) and resampled, so a piece of a 10-hour recording costs its own seconds, and is bounded by
configs/media.toml [audio] max_samples as a file of its length would be. The margin lets the resampler's
filter see the samples around the piece, and the stretch read starts on a sample shared by both rates'
grids, so the piece's samples are those of the whole file decoded, resampled and cut (within float
rounding). What libsndfile cannot read (librosa/audioread's containers) is decoded whole and cut.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from avsearch.errors import DecodeError
from avsearch.media.config import media_config

_MARGIN_S = 0.05  # seconds read on each side of the piece: soxr HQ's filter spans a few ms


@dataclass(frozen=True)
class Stretch:
    """Samples [first, last) of the resampled recording, and how many it holds in all (its length)."""

    wave: np.ndarray
    length: int


def _plan(frames: int, rate: int, sample_rate: int, start: float, end: float | None) -> tuple[int, int, int, int]:
    """(first, last) output samples of the piece, and the input frames [f0, f1) to read for them: f0 on a
    sample of both rates' grids (so output sample k of the stretch is output sample k + f0 * ratio of the
    whole), a margin of _MARGIN_S on each side."""
    total = math.ceil(frames * (float(sample_rate) / rate))  # as audio.resample's length, float rounding included
    first = min(total, round(start * sample_rate))
    last = total if end is None else min(total, round(end * sample_rate))
    g = math.gcd(rate, sample_rate)
    step_in, step_out = rate // g, sample_rate // g
    margin = round(_MARGIN_S * sample_rate)
    f0 = max(0, first - margin) // step_out * step_in
    f1 = min(frames, math.ceil((last + margin) / step_out) * step_in)
    return first, last, f0, f1


def _check_piece(path: Path, frames: int, rate: int, sample_rate: int) -> None:
    limit = media_config().audio.max_samples
    if frames > min(limit, limit * rate // sample_rate):
        raise DecodeError(
            f"{path}: a piece of {frames / rate:.0f} s at {rate:,} Hz decodes to over {limit:,} samples "
            "(max_samples, configs/media.toml [audio]): ask for a shorter one"
        )


def _cut(
    read: Callable[[int, int], np.ndarray],
    resample: Callable[[np.ndarray], np.ndarray],
    path: Path,
    frames: int,
    rate: int,
    sample_rate: int,
    start: float,
    end: float | None,
) -> Stretch:
    first, last, f0, f1 = _plan(frames, rate, sample_rate, start, end)
    length = math.ceil(frames * (float(sample_rate) / rate))
    if last <= first:
        return Stretch(np.zeros(0, np.float32), length)
    _check_piece(path, f1 - f0, rate, sample_rate)
    wave = read(f0, f1)
    if not np.isfinite(wave).all():
        raise DecodeError(f"{path}: audio holds NaN or infinite samples")
    out = wave if rate == sample_rate else resample(wave)
    at = f0 * sample_rate // rate
    return Stretch(np.clip(out[first - at : last - at], -1.0, 1.0), length)


def recording_piece(path: Path | str, sample_rate: int, start: float, end: float | None) -> Stretch:
    """The piece of a sound file, mono at `sample_rate` as media/audio.py load_audio gives the whole file
    (channels averaged, its resampling, its header checks); DecodeError as load_audio's."""
    import soundfile as sf

    from avsearch.media.audio import _check_rate, load_audio, resample

    path = Path(path)
    try:
        sound = sf.SoundFile(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError):  # another container: decoded whole (librosa/audioread)
        wave = load_audio(path, sample_rate)
        first = min(len(wave), round(start * sample_rate))
        last = len(wave) if end is None else min(len(wave), round(end * sample_rate))
        return Stretch(wave[first:last], len(wave))
    with sound:
        rate = _check_rate(path, sound.samplerate)

        def read(f0: int, f1: int) -> np.ndarray:
            sound.seek(f0)
            block = sound.read(f1 - f0, dtype="float32", always_2d=True)
            return block.mean(axis=1, dtype=np.float64).astype(np.float32)

        return _cut(read, lambda w: resample(w, rate, sample_rate), path, sound.frames, rate, sample_rate, start, end)


def track_piece(path: Path | str, sample_rate: int, start: float, end: float | None) -> Stretch | None:
    """The piece of a video's sound, mono at `sample_rate` as media/sound_windows.py audio_track gives the
    whole track (channels averaged, soxr HQ): the container is seeked to the margin before the piece and
    decoded to its end. None when the video has no sound; DecodeError as audio_track's."""
    import av
    import soxr

    from avsearch.media.video import _open, _probe_open

    path = Path(path)
    container = _open(path)
    try:
        info = _probe_open(container, path)
        if not info.has_audio:
            return None
        rate = info.audio_rate
        stream = container.streams.audio[0]
        # the header's length, and a second for a codec's padding: the read stops where the sound does
        frames = math.ceil(info.duration * rate) + rate
        origin = stream.start_time or 0

        def read(f0: int, f1: int) -> np.ndarray:
            # sample positions from the frames' timestamps, counted from the stream's start as the whole
            # decode counts them; a seek that lands after f0 falls back to the whole decode
            if f0:
                container.seek(origin + int(f0 / rate / stream.time_base), stream=stream, backward=True)
            out = np.zeros(f1 - f0, np.float32)
            resampler = av.AudioResampler(format="fltp", layout=None, rate=None)  # as _mono_blocks
            at, filled = None, f0
            for frame in container.decode(stream):
                if frame.pts is not None:
                    at = round((frame.pts - origin) * stream.time_base * rate)
                elif at is None:  # no timestamps: counted from the first frame, right only from the start
                    if f0:
                        raise _SeekMissed
                    at = 0
                if at > filled:
                    raise _SeekMissed
                for part in resampler.resample(frame):
                    mono = part.to_ndarray().mean(axis=0, dtype=np.float64).astype(np.float32)
                    lo, hi = max(at, f0), min(at + len(mono), f1)
                    if hi > lo:
                        out[lo - f0 : hi - f0] = mono[lo - at : hi - at]
                        filled = max(filled, hi)
                    at += len(mono)
                if at >= f1:
                    break
            return out[: filled - f0]

        try:
            got = _cut(
                read,
                lambda w: np.ascontiguousarray(soxr.resample(w, rate, sample_rate, quality="HQ"), dtype=np.float32),
                path,
                frames,
                rate,
                sample_rate,
                start,
                end,
            )
            return replace(got, length=round(info.duration * sample_rate))  # the header's, not the read's bound
        except (_SeekMissed, av.FFmpegError):
            pass
    finally:
        container.close()
    from avsearch.media.sound_windows import audio_track

    wave = audio_track(path, sample_rate)  # the seek failed: the whole track, as before
    if wave is None:
        return Stretch(np.zeros(0, np.float32), 0)
    first = min(len(wave), round(start * sample_rate))
    last = len(wave) if end is None else min(len(wave), round(end * sample_rate))
    return Stretch(wave[first:last], len(wave))


class _SeekMissed(Exception):
    """The container's seek landed after the piece's first sample."""
