"""Files/s for image (CLIP) and audio (CLAP) embedding, end to end vs decode-only vs the bare model forward.

Real weights cannot be downloaded on the benchmark machines, so the encoders run with RANDOM weights
of the real architectures (open_clip ViT-B-32; laion_clap HTSAT-tiny fusion) written by
tests/weights_factory.py. Speed does not depend on the weight values; the CLAP text tower is tiny
there but is not used by the audio figures. Columns: `files` (encode_files: decode then encode, one
call); `threads` / `procs` (embedding/stream.encode_batches, what `avsearch index` and `embed` run, with
the next batches decoded by 2 worker threads / by worker processes, one per core but one);
`dec 1` (decode only, one thread) and `dec N` (decode only, in the worker processes: the decode
ceiling of this machine); `bare` (the model forward on pre-decoded input). On a CPU the model bounds
everything (stream/bare is the pipeline's efficiency); on a GPU the goal is stream >= 0.8 x dec N.
Last, the bare forward under bf16 autocast: its speed and its cosine to the float32 vectors.

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

from avsearch.embedding.stream import DecodePlan, decode_batches, encode_batches, plan_decode  # noqa: E402
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
        clap = load_encoder("clap-630k-fusion", ["audio"], weights_dir=weights, device=args.device)
        procs = plan_decode(clip, 100, "processes")
        threads = DecodePlan("threads", 2, 2)
        rows = []
        for label, enc, files, batch, repeats in (
            (f"image  CLIP ViT-B/32 ({args.images} JPEG 640x480)", clip, images, 16, 2),
            (f"audio  CLAP fusion ({args.audio} FLAC 10 s 44.1k)", clap, clips, 4, 1),
        ):
            modality = "image" if enc is clip else "audio"
            batches = _batches(files, batch)
            prepared = [enc.prepare(modality, p) for p in files]
            times = [
                _timed(lambda e=enc, m=modality, f=files: e.encode_files(m, f), repeats),
                _timed(lambda e=enc, m=modality, b=batches: list(encode_batches(e, m, b, threads)), repeats),
                _timed(lambda e=enc, m=modality, b=batches: list(encode_batches(e, m, b, procs)), repeats),
                _timed(lambda e=enc, m=modality, f=files: [e.prepare(m, p) for p in f], repeats),
                _timed(lambda e=enc, m=modality, b=batches: list(decode_batches(e.preparer(m), b, procs)), repeats),
                _timed(lambda e=enc, m=modality, p=prepared: e.encode_prepared(m, p), repeats),
            ]
            rows.append((label, len(files), times))
        fp32 = clip.encode_prepared("image", [clip.prepare("image", p) for p in images])
        device_type = clip.device.type
        with torch.autocast(device_type, dtype=torch.bfloat16):
            prepared = [clip.prepare("image", p) for p in images]
            t_bf16 = _timed(lambda: clip.encode_prepared("image", prepared))
            bf16 = clip.encode_prepared("image", prepared)
        t_fp32 = _timed(lambda: clip.encode_prepared("image", prepared))

    cores = torch.get_num_threads()
    print(f"device: {clip.device} ({cores} CPU threads; {procs.workers} decode processes); RANDOM weights")
    print(f"{'files/s':>44}{'threads':>9}{'procs':>9}{'dec 1':>9}{'dec N':>9}{'bare':>9}")
    for label, n, times in rows:
        print(f"{label:35}" + "".join(f"{n / t:9.2f}" for t in times))
    cosine = np.sum(fp32 * bf16, axis=1)
    print(
        f"CLIP image tower, bf16 autocast on {device_type}: {args.images / t_bf16:.1f} vs {args.images / t_fp32:.1f} "
        f"images/s in float32; cosine to float32 min {cosine.min():.5f}, mean {cosine.mean():.5f}"
    )


def _batches(paths: list[Path], size: int) -> list[list[str]]:
    return [[str(p) for p in paths[i : i + size]] for i in range(0, len(paths), size)]


if __name__ == "__main__":
    main()
