"""Files/s for image (CLIP) and audio (CLAP) embedding, end to end vs decode-only vs the bare model forward.

Real weights cannot be downloaded on the benchmark machines, so the encoders run with RANDOM weights
of the real architectures (open_clip ViT-B-32; laion_clap HTSAT-tiny fusion) written by
tests/weights_factory.py. Speed does not depend on the weight values; the CLAP text tower is tiny
there but is not used by the audio figures. Columns: `encode_files` (decode then encode, one call);
`stream` (embedding/stream.encode_batches, what `avsearch index` and `embed` run: the next batch decodes
in worker threads while this one is encoded); decode-only (the same files decoded, no model); bare (the
model forward on pre-decoded input). stream/bare is the pipeline's efficiency; on a GPU the decode-only
rate is its ceiling.

Long clips (window-mean vs fusion input): benchmarks/clap_long.py.

Usage: .venv/bin/python benchmarks/encoders.py [--images 64] [--audio 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.weights_factory

from avsearch.embedding.stream import encode_batches  # noqa: E402
from avsearch.encoders.registry import load_encoder  # noqa: E402
from tests.weights_factory import make_av_weights  # noqa: E402


def _timed(fn, repeats: int = 2) -> float:
    fn()  # warm-up (allocator, kernels, thread pools)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--audio", type=int, default=8)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = make_av_weights(root / "weights")
        images = []
        for i in range(args.images):
            path = root / f"img{i}.jpg"
            Image.fromarray((rng.random((480, 640, 3)) * 255).astype(np.uint8)).save(path, quality=90)
            images.append(path)
        clips = []
        for i in range(args.audio):
            path = root / f"clip{i}.flac"
            sf.write(path, (0.1 * rng.standard_normal(44_100 * 10)).astype(np.float32), 44_100)
            clips.append(path)

        clip = load_encoder("clip-vit-b-32-openai", ["image"], weights_dir=weights, device=args.device)
        pixels = torch.stack([clip.prepare("image", p) for p in images])
        t_img = _timed(lambda: clip.encode_files("image", images))
        t_img_stream = _timed(lambda: list(encode_batches(clip, "image", _batches(images, 16))))
        t_img_decode = _timed(lambda: [clip.prepare("image", p) for p in images])
        t_img_bare = _timed(lambda: clip.encode_pixels(pixels))

        clap = load_encoder("clap-630k-fusion", ["audio"], weights_dir=weights, device=args.device)
        # Bare = mel + model forward on decoded 10 s waveforms (clips <= 10 s: the same input in both
        # long-clip modes; window-mean's prepare() stops at the waveform, fusion's at the mel).
        windows = np.concatenate([clap.with_long_clip("window-mean").prepare("audio", p) for p in clips])
        t_aud = _timed(lambda: clap.encode_files("audio", clips), repeats=1)
        t_aud_stream = _timed(lambda: list(encode_batches(clap, "audio", _batches(clips, 4))), repeats=1)
        t_aud_decode = _timed(lambda: [clap.prepare("audio", p) for p in clips], repeats=1)
        t_aud_bare = _timed(lambda: clap.encode_windows(windows), repeats=1)

    threads = torch.get_num_threads()
    print(f"device: {clip.device} ({threads} CPU threads); RANDOM weights of the real architectures")
    print(f"{'files/s':>44}{'stream':>10}{'decode':>10}{'bare':>10}{'stream/bare':>13}")
    rows = [
        (
            f"image  CLIP ViT-B/32 ({args.images} JPEG 640x480)",
            args.images,
            t_img,
            t_img_stream,
            t_img_decode,
            t_img_bare,
        ),
        (
            f"audio  CLAP fusion ({args.audio} FLAC 10 s 44.1k)",
            args.audio,
            t_aud,
            t_aud_stream,
            t_aud_decode,
            t_aud_bare,
        ),
    ]
    for label, n, t_pipe, t_stream, t_decode, t_bare in rows:
        rates = "".join(f"{n / t:10.2f}" for t in (t_pipe, t_stream, t_decode, t_bare))
        print(f"{label:34}{rates}{t_bare / t_stream:12.0%}")


def _batches(paths: list[Path], size: int) -> list[list[str]]:
    return [[str(p) for p in paths[i : i + size]] for i in range(0, len(paths), size)]


if __name__ == "__main__":
    main()
