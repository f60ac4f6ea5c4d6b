"""Moment-level recall on generated events (issue 27): does the top moment of the right file fall on the event?

--videos videos (64 x 48 at 10 fps, --seconds long, an AAC sound track) are generated, each with an event
of its own: a square of its own colour over a grey shot during a random span of 3-8 s, and a tone of its
own pitch during another random span of 4-9 s (spans start at random fractions of a second, so they do not
fall on sampled times or window edges). They are indexed by `index_folder` (what `avsearch index` runs)
with the real CLIP and CLAP architectures (random weights: tests/weights_factory.py) and a controlled
bridge, as tests/search/test_moments_real.py builds one: its CLIP head maps the picture of square k to e_k
and the grey shot to e_0, its CLAP head maps a 10 s tone of pitch k to e_k and 10 s of silence to e_0 (the
bridge knows the events' pictures and sounds, not their times or files).
Queries, one per event and track:
- frames: `query --audio tone_k.wav --target image` (the tone's picture is square k);
- sound segments: `query --image square_k.png --target audio`.
A query counts as a hit when the top moment of the event's own file overlaps the true span widened by one
sampling step (frames: 1 / sample_fps; segments: the hop). Printed: recall@1 per track, and how often that
moment was also the first hit of the whole list (the file itself ranked first), with the misses listed.

Usage: .venv/bin/python benchmarks/moment_recall.py [--videos 12] [--seconds 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import colorsys
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avsearch.encoders.registry import load_encoder  # noqa: E402
from avsearch.indexing.pipeline import index_folder  # noqa: E402
from avsearch.media.config import media_config  # noqa: E402
from avsearch.search.engine import SearchEngine  # noqa: E402
from avsearch.search.query import query  # noqa: E402
from avsearch.store.index import Index  # noqa: E402
from tests.localize.synthetic import _identity_pair, link_av_weights  # noqa: E402
from tests.media.videos import GREY, encode_frames  # noqa: E402
from tests.weights_factory import make_av_weights  # noqa: E402

W, H, FPS, RATE = 64, 48, 10, 44_100
Span = tuple[float, float]


def colour(k: int, n: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(k / n, 0.9, 0.9)
    return round(r * 255), round(g * 255), round(b * 255)


def pitch(k: int) -> float:
    return 300.0 * 2 ** (k / 4)  # a major third apart: 300 Hz, 357 Hz, ...


def picture(rgb: tuple[int, int, int] | None) -> np.ndarray:
    pixels = np.full((H, W, 3), GREY, np.uint8)
    if rgb is not None:
        pixels[H // 4 : H // 4 + H // 2, W // 4 : W // 4 + W // 2] = rgb
    return pixels


def tone(freq: float, seconds: float, span: Span | None = None) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    on = np.ones_like(t, bool) if span is None else (t >= span[0]) & (t < span[1])
    return np.where(on, 0.5 * np.sin(2 * np.pi * freq * t), 0.0).astype(np.float32)


def make_event_video(path: Path, seconds: float, rgb: tuple[int, int, int], square: Span, sound: np.ndarray) -> None:
    """Grey shot, the square during `square`; `sound` (mono) on both channels of an AAC track."""
    with av.open(str(path), "w") as out:
        audio = out.add_stream("aac", rate=RATE)
        audio.layout = "stereo"
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.options = {"preset": "ultrafast"}
        plain, marked = picture(None), picture(rgb)
        frames = (marked if square[0] <= i / FPS < square[1] else plain for i in range(round(seconds * FPS)))
        encode_frames(out, video, frames)
        both = np.stack([sound, sound])
        for start in range(0, sound.shape[0], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(both[:, start : start + 1024]), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts = RATE, start
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)


def onto(vectors: np.ndarray) -> torch.Tensor:
    """A linear map sending vectors[k] to the k-th unit vector (least squares)."""
    targets = np.eye(vectors.shape[1], vectors.shape[0])
    return torch.tensor(targets @ np.linalg.pinv(vectors.astype(np.float64).T), dtype=torch.float32)


def is_hit(moment: Span, event: Span, step: float) -> bool:
    """The moment overlaps the event's span widened by one sampling step on each side."""
    return moment[0] < event[1] + step and moment[1] > event[0] - step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    limits = media_config().video
    print(f"load average {os.getloadavg()[0]:.1f}; {args.videos} videos of {args.seconds:g} s, seed {args.seed}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = link_av_weights(make_av_weights(root / "shared"), root / "weights")
        media, queries = root / "media", root / "queries"
        media.mkdir()
        queries.mkdir()
        events: dict[str, tuple[Span, Span]] = {}  # video name -> (square span, tone span)
        for k in range(1, args.videos + 1):
            square_len, tone_len = rng.uniform(3, 8), rng.uniform(4, 9)
            square = (s := float(rng.uniform(1, args.seconds - square_len - 1)), s + square_len)
            sound = (s := float(rng.uniform(1, args.seconds - tone_len - 1)), s + tone_len)
            name = f"event{k:02d}.mp4"
            make_event_video(
                media / name, args.seconds, colour(k, args.videos), square, tone(pitch(k), args.seconds, sound)
            )
            events[name] = (square, sound)
            Image.fromarray(picture(colour(k, args.videos))).save(queries / f"square{k:02d}.png")
            sf.write(queries / f"tone{k:02d}.wav", tone(pitch(k), 10.0), RATE)
        Image.fromarray(picture(None)).save(queries / "grey.png")
        clip = load_encoder("clip-vit-b-32-openai", ("image",), weights, "cpu")
        clap = load_encoder("clap-630k-fusion", ("audio",), weights, "cpu")
        numbers = range(1, args.videos + 1)
        pictures = [queries / "grey.png", *(queries / f"square{k:02d}.png" for k in numbers)]
        prepare = clap.preparer("audio")  # silence from samples: a silent file is refused, a silent window not
        sounds = [np.zeros(10 * prepare.sample_rate, np.float32)]
        sounds += [prepare.load(queries / f"tone{k:02d}.wav") for k in numbers]
        sound_vectors = clap.encode_prepared("audio", [prepare.from_samples(w) for w in sounds])
        state: dict[str, torch.Tensor] = {}
        _identity_pair(onto(sound_vectors), "Head_A", state)  # CLAP side: tone k -> e_k, silence -> e_0
        _identity_pair(onto(clip.encode_files("image", pictures)), "Head_B", state)  # CLIP side: square k -> e_k
        torch.save(state, weights / "clap_clip.pt")
        loaded = {"clip-vit-b-32-openai": clip, "clap-630k-fusion": clap}

        def loader(name: str, towers: tuple[str, ...]):
            return loaded[name] if name in loaded else load_encoder(name, towers, weights, "cpu")

        start = time.perf_counter()
        summary = index_folder(media, root / "index", weights / "clap_clip.pt", device="cpu", encoder_loader=loader)
        print(
            f"indexed {summary.added} videos in {time.perf_counter() - start:.0f} s: {summary.counts['image']} frame "
            f"rows, {summary.counts['audio']} sound segment rows; failed {summary.failed}"
        )
        engine = SearchEngine(Index.open(root / "index", device="cpu", encoder_loader=loader))
        tracks = (
            ("frames", "image", "audio", "tone", 0, 1.0 / limits.sample_fps),
            ("sound segments", "audio", "image", "square", 1, limits.hop_s),
        )
        for label, target, given, stem, which, step in tracks:
            hits = firsts = 0
            misses = []
            for k, name in zip(numbers, events, strict=True):
                suffix = "wav" if given == "audio" else "png"
                (found,) = query(engine, **{given: queries / f"{stem}{k:02d}.{suffix}"}, target=target, k=10_000)
                own = [h for h in found.hits if Path(h.path).name == name]
                event = events[name][which]
                top = own[0] if own else None
                if top is not None and top.start is not None and is_hit((top.start, top.end), event, step):
                    hits += 1
                    firsts += Path(found.hits[0].path).name == name
                else:
                    got = "nothing" if top is None else f"{top.start}-{top.end} (score {top.score:.3f})"
                    misses.append(f"{name}: event {event[0]:.1f}-{event[1]:.1f} s, top moment {got}")
            n = len(events)
            print(
                f"{label:<15} recall@1 {hits / n:.3f} ({hits}/{n}; within {step:g} s); "
                f"also the list's first hit: {firsts}/{n}"
            )
            for line in misses:
                print(f"  miss {line}")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
