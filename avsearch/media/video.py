"""Video decoding (PyAV, FFmpeg inside its wheel): opening a file and reading its facts.

- `probe(path)` -> VideoInfo: duration, frame size and rate, the audio stream's rate and channels, read
  from the container's header; every declared size is checked against configs/media.toml [video] (and
  [audio] for the sound) before a frame or a sample is decoded. A file that is not a video (by content:
  `is_video`), empty, truncated or with an absurd header raises DecodeError in one line naming it.
- Its frames sampled over time: media/frame_sampling.py; its sound and long recordings cut into windows:
  media/sound_windows.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from avsearch.errors import DecodeError
from avsearch.media.config import media_config
from avsearch.media.signatures import VIDEO_HEAD, is_video

log = logging.getLogger(__name__)

_MAX_CHANNELS = 64
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
