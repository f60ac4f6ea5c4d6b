"""Videos made by the tests with PyAV, with known events at known times: a red square on a grey static
shot from 12 to 18 s, a 440 Hz tone in the sound from 30 to 35 s (media, indexing and search tests)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np

W, H, FPS, SECONDS = 64, 48, 10, 40.0
SQUARE = (12.0, 18.0)
TONE = (30.0, 35.0)
GREY = (90, 90, 90)
RED = (230, 30, 30)  # the same luma as GREY: only colour tells them apart


def encode_frames(out: av.container.OutputContainer, stream: av.VideoStream, images: Iterable[np.ndarray]) -> None:
    """Encode RGB images (H, W, 3) as the stream's frames 0, 1, 2, ... and flush the encoder."""
    for i, image in enumerate(images):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def make_video(
    path: Path,
    seconds: float = SECONDS,
    fps: int = FPS,
    size: tuple[int, int] = (W, H),
    square: tuple[float, float] | None = SQUARE,
    tone: tuple[float, float] | None = TONE,
    video: bool = True,
    audio: bool = True,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    rate: int = 44_100,
) -> Path:
    """A video of a static grey shot with a red square in the middle during `square` (seconds), and a
    stereo sound track silent but for a 440 Hz tone (peak 0.5) on its left channel during `tone`."""
    width, height = size
    with av.open(str(path), "w", options=container_options or {}) as out:
        if audio:  # every stream is added before the first packet is written
            sound = out.add_stream("aac", rate=rate)
            sound.layout = "stereo"
        if video:
            stream = out.add_stream(codec, rate=fps)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
            if codec == "libx264":
                stream.options = {"preset": "ultrafast", **(options or {})}
            plain = np.full((height, width, 3), GREY, np.uint8)
            marked = plain.copy()
            marked[height // 4 : height // 4 + height // 2, width // 4 : width // 4 + width // 2] = RED
            shown = lambda i: marked if square and square[0] <= i / fps < square[1] else plain  # noqa: E731
            encode_frames(out, stream, (shown(i) for i in range(round(seconds * fps))))
        if audio:
            t = np.arange(round(seconds * rate)) / rate
            wave = np.zeros_like(t, dtype=np.float32)
            if tone:
                on = (t >= tone[0]) & (t < tone[1])
                wave[on] = 0.5 * np.sin(2 * np.pi * 440 * t[on])
            both = np.stack([wave, np.zeros_like(wave)])  # the tone on the left only: mono is half of it
            for start in range(0, len(t), 1024):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(both[:, start : start + 1024]), format="fltp", layout="stereo"
                )
                frame.sample_rate, frame.pts = rate, start
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return path


def jpeg_video(path: Path, size: tuple[int, int], seconds: int = 2) -> Path:
    """An MJPEG AVI of `size` frames (one flat grey JPEG muxed once a second): 4K or 8K in under a second,
    where encoding the frames through a codec takes several."""
    import io
    from fractions import Fraction

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, GREY).save(buffer, format="JPEG", quality=50)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = *size, "yuvj420p"
        for i in range(seconds):
            packet = av.Packet(buffer.getvalue())
            packet.stream, packet.time_base = stream, Fraction(1, 1)
            packet.pts = packet.dts = i
            packet.duration = 1
            out.mux(packet)
    return path


def vfr_video(path: Path, times_ms: Iterable[int], red: tuple[int, int]) -> Path:
    """A variable-frame-rate video: frames at the given milliseconds, red during `red` (ms), grey otherwise."""
    from fractions import Fraction

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        stream.options = {"preset": "ultrafast"}
        for ms in times_ms:
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), RED if red[0] <= ms < red[1] else GREY, np.uint8))
            frame.pts, frame.time_base = ms, stream.codec_context.time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def unknown_codec(source: Path, path: Path, tag: bytes = b"avc1") -> Path:
    """`source` (an MP4) with its stream's sample entry renamed to a codec FFmpeg has no decoder for."""
    data = bytearray(source.read_bytes())
    at = data.find(tag, data.find(b"stsd"))
    data[at : at + 4] = b"zzzz"
    path.write_bytes(bytes(data))
    return path
