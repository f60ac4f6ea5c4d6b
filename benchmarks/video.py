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

--e2e: the same 720p video (copies of a 2-minute piece back to back, packets copied, with a generated AAC
sound track; made once into --cache) decoded as `avsearch index` decodes it (frames sampled at 1 fps at the
encoder's input side, the sound cut into 10 s windows every 5 s while decoded; decode-only rates), then
the real CLIP ViT-B/32 and CLAP HTSAT fusion architectures (random weights, tests/weights_factory.py)
run bare on those prepared moments, in the model calls index makes (moment_chunk at a time), and last
`index_folder` (what `avsearch index` runs; models loaded beforehand) on a folder holding the video.
Printed: rows per hour of video, decode-only frames/s and segments/s, the bare forward's and the end to
end moments/s, end to end / bare forward (goal >= 0.8: decoding is not the bottleneck), the load average.
Moment-level recall on generated events: benchmarks/moment_recall.py; query latency over moment rows:
benchmarks/moment_latency.py.

Usage: .venv/bin/python benchmarks/video.py [--minutes 10] [--gops 25,250] [--fps 1] [--repeats 2]
       .venv/bin/python benchmarks/video.py --e2e [--minutes 10] [--e2e-gop 250] [--device cpu]
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

from avsearch.media.frame_sampling import sampled_frames  # noqa: E402

try:  # frames decoded at the encoder's input side (run against an older checkout: not there)
    from avsearch.media.frame_sampling import frame_side_for  # noqa: E402
except ImportError:
    frame_side_for = None
try:  # a video's sound cut into windows while it is decoded (likewise)
    from avsearch.media.sound_windows import sound_track_segments  # noqa: E402
except ImportError:
    sound_track_segments = None
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


def with_sound(path: Path, piece: Path, copies: int) -> None:
    """`copies` copies of the video-only `piece` back to back (packets copied, not re-encoded: the same
    decoding work per minute) with a stereo AAC sound track (44.1 kHz: quiet noise, a 440 Hz tone every
    30 s) encoded beside them, interleaved by time."""
    rate = 44_100
    rng = np.random.default_rng(1)
    part = path.with_suffix(".part.mp4")
    with av.open(str(piece)) as source, av.open(str(part), "w") as out:
        video_in = source.streams.video[0]
        video = out.add_stream_from_template(video_in)
        sound = out.add_stream("aac", rate=rate)
        sound.layout = "stereo"
        length = round(float(source.duration / 1_000_000) / float(video_in.time_base)) if source.duration else 0
        written = 0  # samples of sound encoded so far

        def sound_until(seconds: float) -> None:
            nonlocal written
            while written < seconds * rate:
                t = (written + np.arange(1024)) / rate
                wave = 0.02 * rng.standard_normal(1024) + 0.3 * np.sin(2 * np.pi * 440 * t) * ((t % 30) < 2)
                both = np.ascontiguousarray(np.stack([wave, wave]).astype(np.float32))
                frame = av.AudioFrame.from_ndarray(both, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = rate, written
                written += 1024
                for packet in sound.encode(frame):
                    out.mux(packet)

        for copy in range(copies):
            source.seek(0)
            for packet in source.demux(video_in):
                if packet.size == 0:
                    continue
                packet.pts += copy * length
                packet.dts += copy * length
                packet.stream = video
                out.mux(packet)
                sound_until(float(packet.pts * video_in.time_base))
        sound_until(copies * length * float(video_in.time_base))
        for packet in sound.encode(None):
            out.mux(packet)
    part.rename(path)


def end_to_end(args: argparse.Namespace) -> None:
    """Decode-only vs `avsearch index` (index_folder, models loaded beforehand) vs the bare forward."""
    import tempfile

    import torch

    from avsearch.encoders.registry import load_encoder
    from avsearch.indexing.pipeline import index_folder
    from avsearch.media.sound_windows import audio_track, sound_segments
    from avsearch.store.config import load_search_config
    from tests.weights_factory import make_av_weights, make_released_bridges

    piece_minutes = 2.0
    copies = max(1, round(args.minutes / piece_minutes))
    piece = args.cache / f"720p-{piece_minutes:g}min-gop{args.e2e_gop}.mp4"
    if not piece.exists():
        generate(piece, piece_minutes, args.e2e_gop)
    path = args.cache / f"720p-{copies * piece_minutes:g}min-gop{args.e2e_gop}-sound.mp4"
    if not path.exists():
        start = time.perf_counter()
        with_sound(path, piece, copies)
        print(f"made {path} in {time.perf_counter() - start:.0f} s ({path.stat().st_size / 1e6:.0f} MB)")
    weights = make_released_bridges(make_av_weights(args.cache / "weights"))
    minutes = copies * piece_minutes
    print(f"{minutes:g} min of {WIDTH}x{HEIGHT} H.264 at {RATE} fps, a keyframe every {args.e2e_gop} frames, AAC sound")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, device {args.device}")
    load = [os.getloadavg()[0]]
    clip = load_encoder("clip-vit-b-32-openai", ("image",), weights, args.device)
    clap = load_encoder("clap-630k-fusion", ("audio",), weights, args.device)
    chunk = load_search_config().ingest.moment_chunk
    # decode only: what index's decode step yields, no model
    prep_image = clip.preparer("image")
    side = frame_side_for(prep_image) if frame_side_for else None  # None: before frames were decoded at it
    images, t_frames_prep = [], 0.0
    start = time.perf_counter()
    for _, _, frame in sampled_frames(path, frame_side=side):  # as index decodes them
        began = time.perf_counter()
        images.append(prep_image.from_image(frame))
        t_frames_prep += time.perf_counter() - began
    t_frames = time.perf_counter() - start - t_frames_prep
    start = time.perf_counter()
    prep_sound = clap.preparer("audio")
    if sound_track_segments is not None:  # cut while decoded, as index does
        segments = sound_track_segments(path, prep_sound.sample_rate)
    else:  # an older checkout: the whole track decoded, then cut
        segments = sound_segments(audio_track(path, prep_sound.sample_rate), prep_sound.sample_rate)
    sounds = [prep_sound.from_samples(w) for _, _, w in segments]
    t_sound = time.perf_counter() - start
    load.append(os.getloadavg()[0])
    # the bare forward on the same prepared items, in the model calls index makes (moment_chunk at a time)
    start = time.perf_counter()
    for i in range(0, len(images), chunk):
        clip.encode_prepared("image", images[i : i + chunk])
    f_frames = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(0, len(sounds), chunk):
        clap.encode_prepared("audio", sounds[i : i + chunk])
    f_sound = time.perf_counter() - start
    n_frames, n_sound = len(images), len(sounds)
    del images, sounds
    load.append(os.getloadavg()[0])
    loaded = {("clip-vit-b-32-openai", ("image",)): clip, ("clap-630k-fusion", ("audio",)): clap}

    def loader(name: str, towers: tuple[str, ...]):
        return loaded.get((name, tuple(towers))) or load_encoder(name, towers, weights, args.device)

    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp) / "media"
        media.mkdir()
        os.link(path, media / path.name)  # a hard link: index follows no link out of its folder
        start = time.perf_counter()
        summary = index_folder(
            media, Path(tmp) / "index", weights / "clap_clip.pt", device=args.device, encoder_loader=loader
        )
        wall = time.perf_counter() - start
    load.append(os.getloadavg()[0])
    rows = n_frames + n_sound
    bare = f_frames + f_sound
    print(
        f"  moments: {n_frames} frames + {n_sound} sound segments = {rows} rows; per hour of video: "
        f"{n_frames * 60 / minutes:,.0f} + {n_sound * 60 / minutes:,.0f} = {rows * 60 / minutes:,.0f}"
    )
    print(
        f"  decode only, frames: {n_frames / t_frames:6.1f} frames/s ({t_frames:.1f} s; CLIP's resize+crop "
        f"{t_frames_prep:.1f} s more)"
    )
    print(f"  decode only, sound:  {n_sound / t_sound:6.1f} segments/s ({t_sound:.1f} s, decode + resample + mel)")
    print(
        f"  bare forward:        {n_frames / f_frames:6.1f} frames/s ({f_frames:.1f} s), "
        f"{n_sound / f_sound:.1f} segments/s ({f_sound:.1f} s): {rows / bare:.1f} moments/s"
    )
    print(
        f"  end to end (index):  {rows / wall:6.1f} moments/s ({wall:.1f} s, {summary.added} file added, "
        f"failed {summary.failed})"
    )
    print(f"  end to end / bare forward: {bare / wall:.2f}x (goal >= 0.8)")
    print(
        f"  load average (1 min) at start, after decoding, after the forward, after index: "
        f"{', '.join(f'{x:.1f}' for x in load)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--gops", default="25,250", help="keyframe spacings in frames (25 = 1 s at 25 fps)")
    parser.add_argument("--fps", type=float, default=1.0, help="sampled frames per second")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each way, the fastest kept")
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/avsearch/bench-video").expanduser())
    parser.add_argument("--e2e", action="store_true", help="decode-only vs index vs the bare forward (below)")
    parser.add_argument("--e2e-gop", type=int, default=250, help="keyframe spacing of the --e2e video")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.e2e:
        end_to_end(args)
        return
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
