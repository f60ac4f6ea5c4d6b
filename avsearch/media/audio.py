"""Audio decoding: a file -> mono float32 waveform at a target rate, and fixed 10 s windows.

Decoding uses soundfile (libsndfile: wav, flac, ogg/vorbis/opus, mp3, aiff, ...) and falls back to
librosa/audioread (ffmpeg or the platform decoders, where installed) for other containers. Whether a
file is a sound at all is decided by its content, as everywhere (media/detect.py).
Resampling uses soxr (librosa's default "soxr_hq", called directly: importing librosa costs a cold
query 0.9 s), which is deterministic, so one file always gives the same samples. The header's sample
rate and length are checked before any sample is read (configs/media.toml [audio]): a few bytes
declaring a rate of 0, or hours at a rate resampled 48,000 times up, are refused in one line rather
than divided by or allocated.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from avsearch.errors import DecodeError
from avsearch.media.config import media_config
from avsearch.media.detect import require
from avsearch.modalities import AUDIO

log = logging.getLogger(__name__)

# A waveform whose peak is below one 16-bit step is silence to CLAP (it quantises input to int16).
SILENCE_PEAK = 1.0 / 32767.0
_BLOCK = 1 << 20  # frames read at a time when channels are averaged while reading (4 MiB a channel)


def _duration(frames: int, rate: int) -> str:
    seconds = frames / rate
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min {int(seconds % 60)} s"


def _check_rate(path: Path, rate: float) -> int:
    """The header's sample rate, or DecodeError when it is not one (0 divided the resampler by zero)."""
    limit = media_config().audio.max_sample_rate
    if not rate > 0:
        raise DecodeError(f"{path}: sample rate {rate:g} Hz in the header: a rate must be positive")
    if rate > limit:
        raise DecodeError(
            f"{path}: sample rate {rate:,.0f} Hz exceeds the {limit:,} Hz limit (max_sample_rate, configs/media.toml)"
        )
    return int(rate)


def _max_frames(path: Path, rate: int, channels: int, sample_rate: int) -> int:
    """The most frames a file at `rate` with `channels` kept may hold: its decoded array and the waveform
    resampled to `sample_rate` each stay within max_samples (configs/media.toml [audio])."""
    if channels < 1:
        raise DecodeError(f"{path}: {channels} channels in the header")
    limit = media_config().audio.max_samples
    return min(limit // channels, limit * rate // sample_rate)


def _check_length(path: Path, frames: int, rate: int, channels: int, sample_rate: int) -> None:
    """DecodeError, before any sample is read, when `frames` (of `channels` kept) would not fit the limit."""
    if frames <= _max_frames(path, rate, channels, sample_rate):
        return
    limit = media_config().audio.max_samples
    held, resampled = frames * channels, math.ceil(frames * sample_rate / rate)
    if held > limit:
        size = f"{held:,} samples" + (f" ({channels} channels kept)" if channels > 1 else "")
    else:
        size = f"{resampled:,} samples when resampled to {sample_rate:,} Hz"
    raise DecodeError(
        f"{path}: audio of {_duration(frames, rate)} at {rate:,} Hz decodes to {size}, over the {limit:,} "
        "sample limit (max_samples, configs/media.toml)"
    )


def _decode(path: Path, sample_rate: int, mono: bool = False) -> tuple[np.ndarray, int]:
    """(samples, channels) float32 and the file's sample rate; mono: (samples, 1), the channels averaged
    block by block as they are read, so a many-channel file never sits in memory whole.

    The header's rate and length are checked against configs/media.toml [audio] before any sample is
    read (sample_rate: the rate the caller resamples to, which bounds the resampled length too).
    """
    import soundfile as sf

    try:
        # bytes, not str: soundfile encodes a str path strictly and fails on non-UTF-8 file names
        with sf.SoundFile(os.fsencode(path)) as sound:
            rate = _check_rate(path, sound.samplerate)
            channels = 1 if mono else sound.channels
            _check_length(path, sound.frames, rate, channels, sample_rate)
            if not mono or sound.channels == 1:
                return sound.read(dtype="float32", always_2d=True), rate
            out = np.empty((sound.frames, 1), np.float32)
            done = 0
            while done < sound.frames:
                block = sound.read(min(_BLOCK, sound.frames - done), dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                out[done : done + len(block), 0] = block.mean(axis=1, dtype=np.float64)  # as a whole-array mean
                done += len(block)
            return out[:done], rate
    except sf.LibsndfileError as sf_exc:
        first_error = sf_exc
    except RuntimeError as sf_exc:  # older soundfile raises RuntimeError
        first_error = sf_exc
    return _decode_other(path, sample_rate, first_error)


def _decode_other(path: Path, sample_rate: int, first_error: Exception) -> tuple[np.ndarray, int]:
    """librosa/audioread for what libsndfile cannot read: the header is checked as above, and the read
    stops one frame past the limit (a container's duration may be missing or wrong)."""
    try:
        import audioread
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns when it falls back to audioread
            reader = audioread.audio_open(str(path))
            with reader:
                rate = _check_rate(path, reader.samplerate)
                channels = int(reader.channels)
                most = _max_frames(path, rate, channels, sample_rate)
                # librosa reads int(rate * duration) frames: two over the limit survive its rounding
                mono, _ = librosa.load(reader, sr=None, mono=True, duration=(most + 2) / rate)
        if len(mono) > most:  # only the first most + 1 frames were read: say "more than"
            raise DecodeError(
                f"{path}: audio at {rate:,} Hz runs past {_duration(most, rate)} ({most:,} frames x {channels} "
                f"channel(s)), over the {media_config().audio.max_samples:,} sample limit (max_samples, "
                "configs/media.toml)"
            )
        return mono.astype(np.float32)[:, None], rate
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"{path}: not a decodable audio file ({first_error})") from exc


def load_audio(path: Path | str, sample_rate: int = 48_000) -> np.ndarray:
    """Decode `path` to a mono float32 waveform (T,) in [-1, 1] at `sample_rate` Hz.

    Raises DecodeError naming the file when it is missing, not a sound (by content: media/detect.py),
    undecodable, empty, non-finite or silent, or when its header announces a sample rate or a length
    over the limits of configs/media.toml [audio] (checked before any sample is read).
    """
    path = Path(path)
    require(path, AUDIO)
    data, rate = _decode(path, sample_rate, mono=True)
    if data.size == 0 or data.shape[0] == 0:
        raise DecodeError(f"{path}: audio file holds no samples")
    wave = data[:, 0]  # one column: the channels were averaged while reading
    del data
    if not np.isfinite(wave).all():
        raise DecodeError(f"{path}: audio holds NaN or infinite samples")
    if rate != sample_rate:
        wave = resample(wave, rate, sample_rate)
    if wave.size == 0:
        raise DecodeError(f"{path}: audio too short to resample to {sample_rate} Hz")
    if max(float(wave.max()), -float(wave.min())) < SILENCE_PEAK:  # the peak without an |wave| copy
        raise DecodeError(f"{path}: audio is silent (peak below one 16-bit step)")
    return np.clip(wave, -1.0, 1.0, out=wave if wave.flags.writeable else None)


def streamed_length(path: Path | str, sample_rate: int) -> int | None:
    """The length `load_audio(path, sample_rate)` will have, from the header alone (no sample read), for a
    file `audio_blocks` may stream; None for the rest, decoded whole within [audio] max_samples as before:
    what libsndfile cannot read (its other decoders learn the length by decoding), and a rate upsampled more
    than [audio] max_stream_upsampling times (a few KB at 1 Hz would stream hours of samples at 48 kHz)."""
    import soundfile as sf

    path = Path(path)
    require(path, AUDIO)
    try:
        with sf.SoundFile(os.fsencode(path)) as sound:
            rate = _check_rate(path, sound.samplerate)
            if rate * media_config().audio.max_stream_upsampling < sample_rate:
                return None
            return _resampled_size(sound.frames, rate, sample_rate)
    except (sf.LibsndfileError, RuntimeError):
        return None


def audio_blocks(path: Path | str, sample_rate: int = 48_000, block: int = _BLOCK) -> Iterator[np.ndarray]:
    """`load_audio`'s waveform (channels averaged, its resampling, its length) as a stream of blocks, read,
    averaged and resampled (soxr's stream resampler) block by block: memory holds a block, whatever the
    file's length, so no [audio] max_samples bound applies. Not clipped, and silence is not checked (the
    caller sees the whole stream). `block`: frames read at a time. For files libsndfile reads; DecodeError
    as load_audio's otherwise."""
    import soundfile as sf
    import soxr

    path = Path(path)
    require(path, AUDIO)
    try:
        sound = sf.SoundFile(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DecodeError(f"{path}: not a decodable audio file ({exc})") from exc
    with sound:
        rate = _check_rate(path, sound.samplerate)
        # frames read at a time: `block` samples over all channels, and at most `block` once resampled
        block = max(1, min(block // max(1, sound.channels), block * rate // sample_rate))
        stream = soxr.ResampleStream(rate, sample_rate, 1, quality="HQ") if rate != sample_rate else None
        got = given = 0
        held: np.ndarray | None = None  # one block held back: the stream's end fixes the length (see resample)
        while True:
            data = sound.read(block, dtype="float32", always_2d=True)
            if len(data) == 0:
                break
            mono = data.mean(axis=1, dtype=np.float64).astype(np.float32)  # as _decode's block mean
            del data
            if not np.isfinite(mono).all():
                raise DecodeError(f"{path}: audio holds NaN or infinite samples")
            got += len(mono)
            out = mono if stream is None else stream.resample_chunk(mono, last=False)
            if held is not None:
                given += len(held)
                yield held
            held = out
        if not got:
            raise DecodeError(f"{path}: audio file holds no samples")
        tail = [held] if held is not None else []
        if stream is not None:
            tail.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
        last = np.concatenate(tail)
        size = _resampled_size(got, rate, sample_rate)  # the frames read, as load_audio resamples them
        last = np.pad(last, (0, max(0, size - given - len(last))))[: max(0, size - given)]
        if given + len(last) == 0:
            raise DecodeError(f"{path}: audio too short to resample to {sample_rate} Hz")
        yield np.ascontiguousarray(last, dtype=np.float32)


def _resampled_size(frames: int, rate: int, sample_rate: int) -> int:
    """The length of `frames` resampled from `rate` to `sample_rate` by `resample` (or kept, same rate)."""
    return frames if rate == sample_rate else int(np.ceil(frames * (float(sample_rate) / rate)))


def resample(wave: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """librosa.resample(wave, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq"), without importing
    librosa (0.9 s of a cold query): soxr's HQ resampler, then the length fixed to ceil(T * ratio) as
    librosa's fix=True does (zero-padded or cut)."""
    import soxr

    out = soxr.resample(wave, rate, sample_rate, quality="soxr_hq")
    size = _resampled_size(wave.shape[0], rate, sample_rate)
    if out.shape[0] < size:
        out = np.pad(out, (0, size - out.shape[0]))
    return np.ascontiguousarray(out[:size], dtype=np.float32)


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
