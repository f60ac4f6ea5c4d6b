"""A video's sound and long recordings cut into windows (PyAV, soxr).

- `audio_track(path)` -> mono float32 waveform at the encoder's rate (resampled with soxr, as
  media/audio.py load_audio), or None when the video has no sound.
- `sound_segments(wave, rate)` -> fixed windows (CLAP's 10 s, a new one every hop) covering a long
  recording, for a video's sound and for long audio files alike; `stream_segments` the same windows from a
  stream of blocks, and `sound_track_segments(path)` a video's sound cut into them while it is decoded and
  resampled (index time: memory bounded by a window, not by the track's length); `recording_segments` a
  long sound file's, from its blocks (media/audio.py audio_blocks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from avsearch.errors import DecodeError
from avsearch.media.config import media_config
from avsearch.media.video import _open, _probe_open, _reason

log = logging.getLogger(__name__)

SILENCE_PEAK = 1.0 / 32767.0  # as media/audio.py: below one 16-bit step is silence
_TAIL_S = 0.5  # seconds of sound after the last whole window that move it instead of adding one


def _mono_blocks(container, path: Path, rate: int) -> Iterator[np.ndarray]:
    """The first audio stream decoded frame by frame: mono float32 blocks (channels averaged) at its own
    rate. A damaged packet after the first block ends the sound there (logged); before it, DecodeError."""
    import av

    stream = container.streams.audio[0]
    stream.codec_context.thread_type = "AUTO"
    resampler = av.AudioResampler(format="fltp", layout=None, rate=None)  # planar float, channels kept
    held = 0
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                block = out.to_ndarray().mean(axis=0, dtype=np.float64).astype(np.float32)
                held += len(block)
                yield block
    except av.FFmpegError as exc:
        if not held:
            raise DecodeError(f"{path}: sound cannot be decoded ({_reason(exc)})") from exc
        log.warning("%s: sound decoded up to %.1f s (%s)", path, held / rate, _reason(exc))


class SilentTrack(Exception):  # noqa: N818 - a signal, not an error: the sound track holds nothing to index
    """Raised at the end of `sound_track_segments` when the whole sound track was silent."""


def sound_track_segments(
    path: Path | str, sample_rate: int = 48_000, window_s: float | None = None, hop_s: float | None = None
) -> Iterator[tuple[float, float, np.ndarray]]:
    """The video's sound cut into `sound_segments`' windows while it is decoded and resampled (soxr's
    stream resampler, the same samples as `audio_track`'s whole-track resampling), so memory holds about a
    window and a hop of sound however long the video is (no [audio] max_samples bound: a 10-hour video's
    sound is indexed). Nothing when the video has no audio stream; SilentTrack raised at the end when the
    whole track was silent (its windows already yielded are to be dropped). DecodeError as `audio_track`.
    """
    import soxr

    path = Path(path)
    container = _open(path)
    try:
        info = _probe_open(container, path)
        if not info.has_audio:
            return
        rate = info.audio_rate
        stream = (
            soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ") if rate != sample_rate else None
        )

        def resampled() -> Iterator[np.ndarray]:
            got = 0
            for block in _mono_blocks(container, path, rate):
                if not np.isfinite(block).all():
                    raise DecodeError(f"{path}: audio holds NaN or infinite samples")
                got += len(block)
                yield block if stream is None else stream.resample_chunk(block, last=False)
            if not got:
                raise DecodeError(f"{path}: the audio stream holds no samples")
            if stream is not None:
                yield stream.resample_chunk(np.zeros(0, np.float32), last=True)

        try:  # clipped, cut, and SilentTrack at the end of a silent track, as for a long recording
            yield from recording_segments(resampled(), sample_rate, window_s, hop_s, path)
        except SilentTrack:
            log.info("%s: the sound track is silent", path)
            raise
    finally:
        container.close()


def recording_segments(
    blocks: Iterator[np.ndarray],
    rate: int,
    window_s: float | None = None,
    hop_s: float | None = None,
    path: Path | str = "",
) -> Iterator[tuple[float, float, np.ndarray]]:
    """A long sound file's waveform, streamed in blocks at `rate` (media/audio.py audio_blocks), cut into
    `sound_segments`' windows as it is read: memory holds about a window and a hop, whatever its length.
    Clipped to [-1, 1] as load_audio's; SilentTrack raised at the end when the whole file was silent (its
    windows already yielded are to be dropped: the caller lists it, as load_audio refused it)."""
    peak = 0.0

    def clipped() -> Iterator[np.ndarray]:
        nonlocal peak
        for block in blocks:
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
            yield np.clip(block, -1.0, 1.0)

    yield from stream_segments(clipped(), rate, window_s, hop_s, path)
    if peak < SILENCE_PEAK:
        raise SilentTrack(str(path))


def audio_track(path: Path | str, sample_rate: int = 48_000) -> np.ndarray | None:
    """The video's sound as a mono float32 waveform (T,) in [-1, 1] at `sample_rate` Hz (channels
    averaged, resampled with soxr as media/audio.py load_audio), or None when the video has no audio
    stream or its sound is silent (peak under one 16-bit step). Its length is bounded before decoding
    (configs/media.toml [audio] max_samples, on the stored and the resampled samples). DecodeError, one
    line naming the file, as `probe`, or when the sound holds NaN or infinite samples or cannot be decoded.
    """

    path = Path(path)
    container = _open(path)
    try:
        info = _probe_open(container, path)
        if not info.has_audio:
            return None
        limit = media_config().audio.max_samples
        rate = info.audio_rate
        most = min(limit, limit * rate // sample_rate)  # mono samples at the stream's rate
        if info.duration * rate > most:
            raise DecodeError(
                f"{path}: sound of {info.duration / 60:.0f} min at {rate:,} Hz decodes to over {limit:,} samples "
                f"(max_samples, configs/media.toml [audio])"
            )
        blocks: list[np.ndarray] = []
        held = 0
        for block in _mono_blocks(container, path, rate):
            held += len(block)
            if held > most:
                raise DecodeError(f"{path}: sound longer than its header declares, over the sample limit")
            blocks.append(block)
    finally:
        container.close()
    if not blocks:
        raise DecodeError(f"{path}: the audio stream holds no samples")
    wave = np.concatenate(blocks)
    del blocks
    if not np.isfinite(wave).all():
        raise DecodeError(f"{path}: audio holds NaN or infinite samples")
    if rate != sample_rate:
        import soxr

        wave = np.ascontiguousarray(soxr.resample(wave, rate, sample_rate, quality="HQ"), dtype=np.float32)
    if wave.size == 0:
        raise DecodeError(f"{path}: audio too short to resample to {sample_rate} Hz")
    if max(float(wave.max()), -float(wave.min())) < SILENCE_PEAK:
        log.info("%s: the sound track is silent", path)
        return None
    return np.clip(wave, -1.0, 1.0, out=wave)


def sound_segments(
    wave: np.ndarray, rate: int, window_s: float | None = None, hop_s: float | None = None
) -> list[tuple[float, float, np.ndarray]]:
    """(start s, end s, samples) windows of window_s seconds, a new one every hop_s (configs/media.toml
    [video]: CLAP's 10 s, 5 s), covering the whole recording: the last window ends at its last sample
    (starting less than a hop after the one before when the length is not a whole number of hops; moved
    there instead when under half a second is left over, a codec's padding), and
    a recording no longer than one window is one segment, whole. The samples are views of `wave`.
    """
    n = int(wave.shape[0])
    if n == 0:
        raise ValueError("empty waveform")
    window, hop = _window_hop(rate, window_s, hop_s)
    if n <= window:
        return [(0.0, n / rate, wave)]
    return [(s / rate, (s + window) / rate, wave[s : s + window]) for s in _starts(n, window, hop, rate)]


def _window_hop(rate: int, window_s: float | None, hop_s: float | None) -> tuple[int, int]:
    limits = media_config().video
    window_s = limits.window_s if window_s is None else window_s
    hop_s = limits.hop_s if hop_s is None else hop_s
    if not (rate > 0 and window_s > 0 and 0 < hop_s <= window_s):
        raise ValueError(f"need rate > 0 and 0 < hop_s <= window_s, got rate={rate}, {window_s=}, {hop_s=}")
    return max(1, round(window_s * rate)), max(1, round(hop_s * rate))


def _tail_limit(window: int, hop: int, rate: int) -> float:
    """Samples left after the last whole window that move it to the end rather than add one."""
    return min(_TAIL_S * rate, window - hop)


def _starts(n: int, window: int, hop: int, rate: int) -> list[int]:
    """The first sample of each window over n > window samples: every hop, the last one ending at the end."""
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        # a tail shorter than _TAIL_S (an audio codec's padding: AAC adds tens of ms) moves the last window
        # to the end rather than adding a near-copy of it, where the window before still covers what it leaves
        tail = n - window - starts[-1]
        if len(starts) > 1 and tail <= _tail_limit(window, hop, rate):
            starts[-1] = n - window
        else:
            starts.append(n - window)
    return starts


def stream_segments(
    blocks: Iterator[np.ndarray],
    rate: int,
    window_s: float | None = None,
    hop_s: float | None = None,
    path: Path | str = "",
) -> Iterator[tuple[float, float, np.ndarray]]:
    """`sound_segments` of the recording the blocks make up, each window yielded as soon as the samples
    after it tell that it stays where it is (a regular window moves only when under `_tail_limit` samples
    follow it and it is the last), so at most about a window, a hop and a block are held."""
    window, hop = _window_hop(rate, window_s, hop_s)
    must_follow = window + int(_tail_limit(window, hop, rate)) + 1
    pending: list[np.ndarray] = []
    base = held = 0  # pending holds samples base .. base + held
    first = yielded = 0  # the next regular start not yet yielded; windows yielded
    for block in blocks:
        pending.append(block)
        held += len(block)
        if base + held < first + must_follow:
            continue
        buffer = np.concatenate(pending)
        while base + held >= first + must_follow:
            yield first / rate, (first + window) / rate, buffer[first - base : first - base + window].copy()
            first, yielded = first + hop, yielded + 1
        # from the last start yielded: a window added at the end may start less than a hop after it
        keep = first - hop - base
        pending, base, held = [buffer[keep:]], base + keep, held - keep
    n = base + held
    if n == 0:
        raise DecodeError(f"{path}: the recording holds no samples")
    buffer = np.concatenate(pending)
    if n <= window:  # one window or less: one segment, whole (nothing was yielded before)
        yield 0.0, n / rate, buffer
        return
    for start in _starts(n, window, hop, rate)[yielded:]:  # the windows before stay where they were yielded
        yield start / rate, (start + window) / rate, buffer[start - base : start - base + window]
