"""One picture of a moment: the video frame on screen at a time, or a long recording's stretch as a waveform.

The gallery, its "Where is it?" and `query --html` show a video moment as the frame at its start. The
frame is reached by seeking (to the keyframe at or before the time) and decoding from there, so a moment
an hour into a film costs one group of pictures, not an hour of decoding. The file is checked by `probe`
first (content, declared sizes: configs/media.toml [video]) and FFmpeg refuses frames over max_pixels, as
for indexing. A sound moment of a recording (or of a video without pictures) is drawn as its waveform.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from avsearch.errors import DecodeError
from avsearch.media.audio import load_audio
from avsearch.media.config import media_config
from avsearch.media.detect import detect
from avsearch.media.frame_sampling import _upright
from avsearch.media.image import to_rgb
from avsearch.media.preview import render_waveform
from avsearch.media.sound_windows import audio_track
from avsearch.media.video import _reason, probe
from avsearch.modalities import VIDEO

log = logging.getLogger(__name__)

_EPS = 1e-3  # seconds: as media/video.py, a frame within this of a time is on screen at it
WAVEFORM_RATE = 8000  # Hz a sound is decoded at for its waveform: a few hundred columns need no more


def frame_at(path: Path | str, t: float, side: int | None = None, stats: dict | None = None) -> Image.Image:
    """The upright RGB frame on screen `t` seconds into the video (the last frame starting at or before
    it; the first frame for t before it), scaled down so its shorter side is at most `side` (default:
    configs/media.toml [video] frame_side, the size frames are indexed at). DecodeError, one line naming
    the file, as `probe`, or when the video has no pictures or none can be decoded. stats: a dict given
    here gets "decoded", the frames the decoder produced (to measure the seek)."""
    import av

    path = Path(path)
    info = probe(path)
    if not info.has_video:
        raise DecodeError(f"{path}: no video stream (a sound only)")
    limits = media_config().video
    side = limits.frame_side if side is None else side
    t = min(max(0.0, float(t)), info.duration)
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            codec = stream.codec_context
            codec.options = {**codec.options, "max_pixels": str(limits.max_pixels)}
            codec.thread_type = "AUTO"
            origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            if t > 0 and stream.time_base:
                container.seek(int((origin + t) / stream.time_base), stream=stream, backward=True)
            shown = None
            for decoded, frame in enumerate(container.decode(stream), 1):
                if stats is not None:
                    stats["decoded"] = decoded
                when = float(frame.pts * frame.time_base) - origin if frame.pts is not None else 0.0
                if shown is not None and when > t + _EPS:
                    break
                shown = frame
    except av.FFmpegError as exc:
        raise DecodeError(f"{path}: truncated or corrupt video ({_reason(exc)})") from exc
    except MemoryError as exc:
        raise DecodeError(f"{path}: video frames too large to decode in memory") from exc
    if shown is None:
        raise DecodeError(f"{path}: no decodable video frame at {t:.1f} s (truncated or corrupt)")
    width, height = shown.width, shown.height
    scale = min(1.0, side / max(1, min(width, height)))
    picture = shown.reformat(
        max(1, round(width * scale)), max(1, round(height * scale)), format="rgb24", interpolation="AREA"
    ).to_image()
    return _upright(to_rgb(picture), shown.rotation)


def moment_picture(path: Path | str, start: float | None, end: float | None, side: int) -> Image.Image:
    """What a moment (or a whole file given start None) of a video or a sound looks like: a video's frame
    at `start`, else the waveform of start..end of its sound (the whole sound without a range); `side`
    bounds the frame's shorter side and is the waveform's width. DecodeError as the decoders say."""
    path = Path(path)
    kind = detect(path).kind
    at = 0.0 if start is None else start
    if kind == VIDEO and probe(path).has_video:
        return frame_at(path, at, side)
    wave = audio_track(path, WAVEFORM_RATE) if kind == VIDEO else load_audio(path, WAVEFORM_RATE)
    if wave is None:
        raise DecodeError(f"{path}: the video holds neither pictures nor sound to show")
    if start is not None:
        stop = wave.shape[0] if end is None else max(round(end * WAVEFORM_RATE), round(at * WAVEFORM_RATE) + 1)
        wave = wave[round(at * WAVEFORM_RATE) : stop]
    if wave.size == 0:
        wave = np.zeros(1, np.float32)
    return render_waveform(wave, side)
