"""Decode-only speed of videos: every frame decoded vs the sampled path (about 1 frame a second kept).

A 720p H.264 video (1280 x 720, 25 fps, a moving noise texture so it does not compress to nothing) is
generated once per keyframe spacing into a cache folder (--cache, default ~/.cache/avsearch/bench-video)
and decoded four ways, each timed on its own:
- everything: PyAV decodes every frame (FFmpeg's threads), nothing converted: the decoder's ceiling;
- sampled_frames(mode="all"): every frame decoded, the one on screen at each sampled time kept;
- sampled_frames(mode="lazy") (the default): groups of pictures decoded only as far as the last sampled
  time inside them, groups without one skipped undecoded;
- sampled_frames(mode="nonkey"): keyframes only (FFmpeg skip_frame): coarse times when keyframes are
  far apart, for comparison.
Printed per keyframe spacing: video frames per second of wall time (the video's frame count over the
time taken), frames the decoder produced, items yielded (after collapsing near-identical frames: 0 here,
every sampled frame differs), the machine's load average, and lazy / everything. Each way runs --repeats
times, interleaved, and the fastest run is kept.
The keyframe spacing decides what skipping can save: a 1 s spacing (phones, streaming) lets the sampled
path decode a few frames a second; x264's default (250 frames, 10 s) leaves every group holding a
sampled time, so nearly every frame is decoded anyway.

Usage: .venv/bin/python benchmarks/video.py [--minutes 10] [--gops 25,250] [--fps 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avsearch.media.video import sampled_frames  # noqa: E402
from tests.media.videos import encode_frames  # noqa: E402

WIDTH, HEIGHT, RATE = 1280, 720, 25


def generate(path: Path, minutes: float, gop: int) -> None:
    """A 720p H.264 video of a drifting noise texture (new content every frame), keyframes every `gop`."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (HEIGHT // 8 + 1, WIDTH // 8 + 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)  # blocks: encodes like real detail
    frames = int(minutes * 60 * RATE)
    part = path.with_suffix(".part.mp4")
    with av.open(str(part), "w") as out:
        stream = out.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"preset": "ultrafast", "keyint_min": str(gop), "sc_threshold": "0", "crf": "23"}
        encode_frames(out, stream, (_drifting(texture, i) for i in range(frames)))
    part.rename(path)


def _drifting(texture: np.ndarray, i: int) -> np.ndarray:
    """Frame i: the texture shifted a little and its colour drifted, so every second differs."""
    x, y = (3 * i) % 8, (i // 8) % 8
    image = np.ascontiguousarray(texture[y : y + HEIGHT, x : x + WIDTH])
    image[:, :, 0] = (image[:, :, 0].astype(np.uint16) + i) % 256
    return image


def decode_everything(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def sampled(path: Path, mode: str, fps: float) -> tuple[int, int]:
    stats: dict = {}
    items = sum(1 for _ in sampled_frames(path, fps=fps, mode=mode, stats=stats, dedupe_threshold=0))
    return stats.get("decoded", 0), items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--gops", default="25,250", help="keyframe spacings in frames (25 = 1 s at 25 fps)")
    parser.add_argument("--fps", type=float, default=1.0, help="sampled frames per second")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each way, the fastest kept")
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/avsearch/bench-video").expanduser())
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    total = int(args.minutes * 60 * RATE)
    print(f"{args.minutes:g} min of {WIDTH}x{HEIGHT} H.264 at {RATE} fps = {total:,} frames; {args.fps:g} fps sampled")
    print(f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info}), {os.cpu_count()} CPUs")
    for gop in (int(g) for g in args.gops.split(",")):
        path = args.cache / f"720p-{args.minutes:g}min-gop{gop}.mp4"
        if not path.exists():
            start = time.perf_counter()
            generate(path, args.minutes, gop)
            print(f"generated {path} in {time.perf_counter() - start:.0f} s ({path.stat().st_size / 1e6:.0f} MB)")
        print(f"\nkeyframe every {gop} frames ({gop / RATE:g} s), load average {os.getloadavg()[0]:.1f}")
        best: dict[str, tuple[float, int, int]] = {}
        for _ in range(args.repeats):  # interleaved, the fastest of each kept: the machine may be busy
            for name in ("everything", "all", "lazy", "nonkey"):
                start = time.perf_counter()
                if name == "everything":
                    decoded, items = decode_everything(path), 0
                else:
                    decoded, items = sampled(path, name, args.fps)
                wall = time.perf_counter() - start
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, decoded, items)
        rates = {}
        for name, (wall, decoded, items) in best.items():
            rates[name] = total / wall
            label = "decode everything" if name == "everything" else f"sampled_frames({name})"
            print(
                f"  {label:<24} {rates[name]:8.0f} video frames/s  ({wall:6.1f} s, {decoded:,} frames decoded, "
                f"{items} items)"
            )
        print(f"  load average after: {os.getloadavg()[0]:.1f}")
        print(f"  lazy / everything: {rates['lazy'] / rates['everything']:.2f}x")


if __name__ == "__main__":
    main()
