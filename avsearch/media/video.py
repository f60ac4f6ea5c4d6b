"""Video decoding (PyAV, FFmpeg inside its wheel): a file -> its facts, frames sampled over time, its sound.

- `probe(path)` -> VideoInfo: duration, frame size and rate, the audio stream's rate and channels, read
  from the container's header; every declared size is checked against configs/media.toml [video] (and
  [audio] for the sound) before a frame or a sample is decoded. A file that is not a video (by content:
  `is_video`), empty, truncated or with an absurd header raises DecodeError in one line naming it.
- `sampled_frames(path)` -> (t_start, t_end, upright 8-bit RGB PIL image) about once a second, consecutive
  near-identical frames collapsed into one item with a time range. Frames are not all decoded: packets
  are read ahead (cheap) and a group of pictures (keyframe to keyframe) is decoded only as far as the
  last sampled time inside it; a group no sampled time falls in is never decoded (see `_sampled`).
- `audio_track(path)` -> mono float32 waveform at the encoder's rate (resampled with soxr, as
  media/audio.py load_audio), or None when the video has no sound.
- `sound_segments(wave, rate)` -> fixed windows (CLAP's 10 s, a new one every hop) covering a long
  recording, for a video's sound and for long audio files alike; `stream_segments` the same windows from a
  stream of blocks, and `sound_track_segments(path)` a video's sound cut into them while it is decoded and
  resampled (index time: memory bounded by a window, not by the track's length).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from avsearch.errors import DecodeError
from avsearch.media.config import media_config
from avsearch.media.image import to_rgb
from avsearch.media.signatures import VIDEO_HEAD, is_video

log = logging.getLogger(__name__)

SILENCE_PEAK = 1.0 / 32767.0  # as media/audio.py: below one 16-bit step is silence
_THUMB = 32  # side of the colour thumbnails compared to collapse near-identical frames (grey would miss
# changes of colour alone: a red square on grey of the same luma is invisible in grey)
_MAX_CHANNELS = 64
_THREADS = "AUTO"  # FFmpeg's decoding threads (frame and slice)
_TAIL_S = 0.5  # seconds of sound after the last whole window that move it instead of adding one
_EPS = 1e-3  # seconds: a frame whose time is within this of a sampled time is on screen at it
# FFmpeg demuxers that read a video container (mov: MP4/MOV/M4V/3GP; matroska: MKV/WebM)
_CONTAINER_FORMATS = {"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi"}


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    duration: float  # seconds
    width: int  # declared frame size in pixels (0 when there is no video stream)
    height: int
    fps: float  # average frame rate (0.0 without a video stream)
    has_video: bool
    has_audio: bool
    audio_rate: int  # Hz, 0 without sound
    audio_channels: int  # 0 without sound
    container: str  # FFmpeg's demuxer name ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi")


def _text_like(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t\f" for ch in text)


def _open(path: Path):
    """The file opened by FFmpeg, after a content check: DecodeError naming the file otherwise."""
    import av

    try:
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            head = f.read(VIDEO_HEAD)
    except FileNotFoundError as exc:
        raise DecodeError(f"{path}: no such file") from exc
    except OSError as exc:
        raise DecodeError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise DecodeError(f"{path}: empty file (0 bytes), not a video")
    if not is_video(head):
        what = "text" if _text_like(head) else f"bytes {head[:8]!r}"
        raise DecodeError(f"{path}: not a video (it starts with {what}; MP4/MOV, Matroska/WebM or AVI expected)")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise DecodeError(f"{path}: truncated or corrupt video ({_reason(exc)})") from exc
    if not _CONTAINER_FORMATS & set(container.format.name.split(",")):
        container.close()
        raise DecodeError(f"{path}: not a video container (FFmpeg reads it as {container.format.name!r})")
    return container


def _reason(exc: Exception) -> str:
    """FFmpeg's message without the file name PyAV appends."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


def _rate(value: Fraction | None) -> float:
    return float(value) if value else 0.0


def _ratio(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}".removesuffix(".0")


def _duration(container, path: Path) -> float:
    """Seconds from the container, else the longest stream's, else from the packets' timestamps."""
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    lengths = [
        float(s.duration * s.time_base) for s in container.streams if s.duration and s.time_base and s.duration > 0
    ]
    if lengths:
        return max(lengths)
    # no duration in the header (live WebM recordings): read packets (no decoding) up to the limit
    limit = media_config().video.max_duration_s
    end = 0.0
    for packet in container.demux():
        if packet.pts is not None and packet.time_base:
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            if end > limit:
                break
    container.seek(0)
    if end <= 0:
        raise DecodeError(f"{path}: no timestamps: the video's length cannot be told")
    return end


def probe(path: Path | str) -> VideoInfo:
    """The video's facts from its header, each size checked (configs/media.toml [video], [audio] for the
    sound) before anything is decoded. DecodeError, one line naming the file: not a video by content,
    empty, truncated, no audio or video stream, no or absurd frame rate, frame size, shape or length."""
    path = Path(path)
    with _open(path) as container:
        return _probe_open(container, path)


def _probe_open(container, path: Path) -> VideoInfo:
    limits = media_config().video
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    if video is None and audio is None:
        raise DecodeError(f"{path}: no video or audio stream in the container")
    for stream in (video, audio):
        if stream is not None and stream.codec_context is None:  # FFmpeg knows no decoder for its codec
            raise DecodeError(f"{path}: its {stream.type} codec has no decoder in this FFmpeg (PyAV's wheel)")
    duration = _duration(container, path)
    if not math.isfinite(duration) or duration <= 0:
        raise DecodeError(f"{path}: declared duration {duration:g} s: a video must last")
    if duration > limits.max_duration_s:
        raise DecodeError(
            f"{path}: video of {duration / 3600:.1f} h exceeds the {limits.max_duration_s:,} s limit "
            "(max_duration_s, configs/media.toml)"
        )
    width = height = 0
    fps = 0.0
    if video is not None:
        width, height = int(video.codec_context.width), int(video.codec_context.height)
        if width < 1 or height < 1:
            raise DecodeError(f"{path}: video frames of {width}x{height} pixels hold no pixels")
        if width * height > limits.max_pixels:
            raise DecodeError(
                f"{path}: video frames of {width}x{height} pixels exceed the {limits.max_pixels:,} pixel limit "
                "(max_pixels, configs/media.toml [video])"
            )
        ratio = max(width, height) / min(width, height)
        if ratio > limits.max_aspect_ratio:
            raise DecodeError(
                f"{path}: video frames of {width}x{height} pixels: aspect ratio {_ratio(ratio)}:1 exceeds the "
                f"{limits.max_aspect_ratio}:1 limit (max_aspect_ratio, configs/media.toml [video])"
            )
        fps = _rate(video.average_rate) or _rate(video.guessed_rate) or _rate(video.base_rate)
        if not fps > 0:
            raise DecodeError(f"{path}: the video stream declares no frame rate (0 fps)")
        if fps > limits.max_fps:
            raise DecodeError(
                f"{path}: frame rate {fps:,.0f} fps exceeds the {limits.max_fps:,} fps limit (max_fps, "
                "configs/media.toml [video])"
            )
    rate = channels = 0
    if audio is not None:
        rate, channels = int(audio.codec_context.sample_rate or 0), int(audio.codec_context.channels or 0)
        most = media_config().audio.max_sample_rate
        if not 0 < rate <= most:
            raise DecodeError(f"{path}: audio sample rate {rate:,} Hz in the header (1 to {most:,} Hz expected)")
        if not 0 < channels <= _MAX_CHANNELS:
            raise DecodeError(f"{path}: {channels} audio channels in the header (1 to {_MAX_CHANNELS} expected)")
    _check_tail(container, video or audio, duration, path)
    return VideoInfo(
        path=path,
        duration=duration,
        width=width,
        height=height,
        fps=fps,
        has_video=video is not None,
        has_audio=audio is not None,
        audio_rate=rate,
        audio_channels=channels,
        container=container.format.name,
    )


def _check_tail(container, stream, duration: float, path: Path) -> None:
    """A truncated file whose index survived (MP4 with its index first): the last second's packets are
    missing. Seeks near the declared end and reads one packet; containers that cannot seek are not checked."""
    import av

    if duration < 2 or stream.time_base is None:
        return
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    try:
        container.seek(int((start + duration - 1.0) / stream.time_base), stream=stream, backward=True)
        for packet in container.demux(stream):
            if packet.size > 0:
                break
        else:
            raise DecodeError(f"{path}: truncated video: no data near its declared end at {duration:.1f} s")
    except DecodeError:
        raise
    except av.FFmpegError as exc:
        raise DecodeError(f"{path}: truncated or corrupt video ({_reason(exc)})") from exc
    finally:
        with contextlib.suppress(av.FFmpegError):
            container.seek(0)


def _upright(image: Image.Image, rotation: int) -> Image.Image:
    """Apply a display matrix's counter-clockwise rotation (multiples of 90 degrees)."""
    turn = round(rotation / 90) % 4
    if turn == 0:
        return image
    return image.transpose(
        (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)[turn]
    )


def _scaled_size(width: int, height: int, side: int) -> tuple[int, int]:
    short = min(width, height)
    if short <= side:
        return width, height
    scale = side / short
    return max(1, round(width * scale)), max(1, round(height * scale))


def _frame_time(frame, origin: float, index: int, fps: float) -> float:
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base) - origin
    return index / fps  # no timestamps: the frame's place in the stream


def _sampled(
    container, stream, info: VideoInfo, fps: float, mode: str, stats: dict | None = None
) -> Iterator[tuple[float, object]]:
    """(sampled time, av.VideoFrame on screen at that time) for times 0, 1/fps, 2/fps, ... < duration.

    mode "lazy" (the default): packets are demuxed ahead and held undecoded since the decoder's last
    position; when a keyframe arrives at or before the next sampled time, the held packets cannot show at
    any sampled time and are dropped undecoded; otherwise they are decoded, and only as far as the first
    frame after the last sampled time before the keyframe. "all": every frame decoded (the reference).
    "nonkey": keyframes only (FFmpeg skip_frame), for measurement: coarse when keyframes are far apart.
    """
    import av

    step = 1.0 / fps
    limit = info.duration
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    codec = stream.codec_context
    # FFmpeg's own guard, for frames larger than the header said: refused before their buffers are made
    codec.options = {**codec.options, "max_pixels": str(media_config().video.max_pixels)}
    codec.thread_type = _THREADS
    if mode == "nonkey":
        codec.skip_frame = "NONKEY"
    state = {"k": 0, "shown": None, "decoded": 0}

    def target() -> float:
        return state["k"] * step

    def take(frames) -> Iterator[tuple[float, object]]:
        for frame in frames:
            t = _frame_time(frame, origin, state["decoded"], info.fps)
            state["decoded"] += 1
            if stats is not None:
                stats["decoded"] = state["decoded"]
            while state["shown"] is not None and t > target() + _EPS and target() < limit:
                yield target(), state["shown"]
                state["k"] += 1
            state["shown"] = frame

    def decode(packet) -> list:
        try:
            return codec.decode(packet)
        except av.FFmpegError as exc:  # a damaged packet: its frame is lost, the stream goes on
            log.debug("%s: packet not decoded (%s)", info.path, _reason(exc))
            return []

    held: list = []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the demuxer's end-of-stream marker; flushed below
        if mode != "lazy":
            yield from take(decode(packet))
        elif packet.is_keyframe and packet.pts is not None:
            key_time = float(packet.pts * packet.time_base) - origin
            if key_time > target() + _EPS and held:
                last = max(target(), math.floor((key_time - _EPS) / step) * step)  # last sampled time before it
                for old in held:
                    yield from take(decode(old))
                    if state["shown"] is not None and _frame_time(state["shown"], origin, 0, info.fps) > last:
                        break
            held = [packet]
        else:
            held.append(packet)
        if target() >= limit:
            return
    for old in held:
        yield from take(decode(old))
    yield from take(decode(None))
    while state["shown"] is not None and target() < limit:
        yield target(), state["shown"]
        state["k"] += 1


def sampled_frames(
    path: Path | str,
    fps: float | None = None,
    dedupe_threshold: float | None = None,
    frame_side: int | None = None,
    mode: str = "lazy",
    stats: dict | None = None,
) -> Iterator[tuple[float, float, Image.Image]]:
    """(t_start, t_end, upright 8-bit RGB PIL image) for the frames on screen about `fps` times a second
    (configs/media.toml [video] sample_fps), consecutive ones whose 32 x 32 RGB thumbnails differ by at
    most dedupe_threshold (mean absolute difference, 0-255; negative: every sample kept) collapsed into one item
    whose image is the first of them and whose range runs to the next item's start (the last: the video's
    end). Frames are scaled down so their shorter side is at most frame_side. Times in seconds from the
    video's start. DecodeError as `probe` (called first), or when the file has no video stream.
    mode: how frames are reached ("lazy", the default; "all" and "nonkey" to measure, see `_sampled`);
    stats: a dict given here gets "decoded" (frames the decoder produced) and "sampled" (sampled times).
    """
    path = Path(path)
    limits = media_config().video
    fps = limits.sample_fps if fps is None else fps
    threshold = limits.dedupe_threshold if dedupe_threshold is None else dedupe_threshold
    side = limits.frame_side if frame_side is None else frame_side
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if mode not in ("lazy", "all", "nonkey"):
        raise ValueError(f"mode must be lazy, all or nonkey, got {mode!r}")
    container = _open(path)
    try:
        info = _probe_open(container, path)
        if not info.has_video:
            raise DecodeError(f"{path}: no video stream (a sound only)")
        stream = container.streams.video[0]
        start = None
        shown = None
        anchor = None
        last = 0.0
        count = 0
        for t, frame in _sampled(container, stream, info, fps, mode, stats):
            count += 1
            if stats is not None:
                stats["sampled"] = count
            thumb = frame.reformat(_THUMB, _THUMB, format="rgb24", interpolation="AREA").to_ndarray()
            thumb = thumb.astype(np.float32)
            if anchor is not None and float(np.abs(thumb - anchor).mean()) <= threshold:
                last = t
                continue
            if shown is not None:
                yield start, t, shown
            start, anchor, last = t, thumb, t
            picture = frame.reformat(
                *_scaled_size(frame.width, frame.height, side), format="rgb24", interpolation="AREA"
            )
            picture = picture.to_image()
            shown = _upright(to_rgb(picture), frame.rotation)  # the display matrix (phones record rotated)
        if shown is None:
            raise DecodeError(f"{path}: no decodable video frame (truncated or corrupt)")
        yield start, min(info.duration, last + 1.0 / fps), shown
    except DecodeError:
        raise
    except MemoryError as exc:
        raise DecodeError(f"{path}: video frames too large to decode in memory") from exc
    finally:
        container.close()


def frame_side_for(prepare: object) -> int:
    """The shorter side a video's frames are decoded at for a preparer: its model's input side when it
    tells one (`frame_side`, e.g. CLIP's 224), at most configs/media.toml [video] frame_side."""
    side = media_config().video.frame_side
    wanted = getattr(prepare, "frame_side", None)
    return min(side, int(wanted)) if wanted else side


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
        peak = 0.0

        def resampled() -> Iterator[np.ndarray]:
            nonlocal peak
            got = 0
            for block in _mono_blocks(container, path, rate):
                if not np.isfinite(block).all():
                    raise DecodeError(f"{path}: audio holds NaN or infinite samples")
                got += len(block)
                out = block if stream is None else stream.resample_chunk(block, last=False)
                peak = max(peak, float(np.abs(out).max(initial=0.0)))
                yield np.clip(out, -1.0, 1.0)
            if not got:
                raise DecodeError(f"{path}: the audio stream holds no samples")
            if stream is not None:
                out = stream.resample_chunk(np.zeros(0, np.float32), last=True)
                peak = max(peak, float(np.abs(out).max(initial=0.0)))
                yield np.clip(out, -1.0, 1.0)

        yield from stream_segments(resampled(), sample_rate, window_s, hop_s, path)
        if peak < SILENCE_PEAK:
            log.info("%s: the sound track is silent", path)
            raise SilentTrack(str(path))
    finally:
        container.close()


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
