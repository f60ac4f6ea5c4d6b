"""A video's frames sampled over time (PyAV): `sampled_frames(path)` -> (t_start, t_end, upright 8-bit RGB PIL
image) about once a second, consecutive near-identical frames collapsed into one item with a time range.
Frames are not all decoded: packets are read ahead (cheap) and a group of pictures (keyframe to keyframe)
is decoded only as far as the last sampled time inside it; a group no sampled time falls in is never
decoded (see `_sampled`). The container is opened and checked by media/video.py `probe`."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from avsearch.errors import DecodeError
from avsearch.media.config import media_config
from avsearch.media.image import to_rgb
from avsearch.media.video import VideoInfo, _open, _probe_open, _reason

log = logging.getLogger(__name__)

_THUMB = 32  # side of the colour thumbnails compared to collapse near-identical frames (grey would miss
# changes of colour alone: a red square on grey of the same luma is invisible in grey)
_THREADS = "AUTO"  # FFmpeg's decoding threads (frame and slice)
_EPS = 1e-3  # seconds: a frame whose time is within this of a sampled time is on screen at it


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
