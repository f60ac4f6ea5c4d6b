"""The GPU check: the project's torch paths on CUDA, compared with the CPU, with timings.

Meant for a lent GPU machine (shared/REFERENCE.md: torch, numpy, scipy, safetensors there; no faiss,
lancedb, open_clip or laion_clap), so it uses only those: exact search in torch (TorchExact), semantic
consistency, bridge training on a synthetic world, and projection. Ingest (JPEG decoding in worker
processes feeding CLIP ViT-B/32 with random weights, fp16 and bf16 vs fp32) runs where open_clip imports
(its 1.5 MB wheel can be carried and installed with --no-deps); otherwise it says so and is skipped.
Without a GPU it runs the same checks on the CPU at smaller sizes (`--quick`), which shows the script
works, not GPU figures.

    python benchmarks/gpu_check.py            # on the GPU machine: a few minutes
    python benchmarks/gpu_check.py --quick    # anywhere
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avsearch.bridge.config import load_train_config, with_overrides  # noqa: E402
from avsearch.bridge.data import BridgeData  # noqa: E402
from avsearch.bridge.synthetic import SyntheticSpec, make_synthetic  # noqa: E402
from avsearch.bridge.train import compute_pseudo, train_bridge  # noqa: E402
from avsearch.evaluation.ablations import score_bridge_on  # noqa: E402
from avsearch.store.torch_search import TorchExact  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def check_search(device: torch.device, n: int, dim: int = 512) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.choice(n, 200, replace=False)] + 0.3 * rng.standard_normal((200, dim), dtype=np.float32)
    exact32 = TorchExact(vectors, str(device), half=False)
    fast = TorchExact(vectors, str(device), half=True)
    _, want = exact32.search(queries, 10)
    _, got = fast.search(queries, 10)
    agreement = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(want, got, strict=True)])
    times = []
    for q in queries[:50]:
        _sync(device)
        t = time.perf_counter()
        fast.search(q[None], 10)
        _sync(device)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(5):
        fast.search(np.repeat(queries, 5, axis=0)[:1000], 10)
    _sync(device)
    qps = 5000 / (time.perf_counter() - t)
    print(
        f"search     {n:,} x {dim} fp16 on {device}: top-10 agreement with fp32 {agreement:.3f}; "
        f"one query p50 {statistics.median(times) * 1e3:.2f} ms; {qps:,.0f} queries/s in batches of 1000"
    )


def check_bridge(device: torch.device, pairs: int, batch: int, epochs: int) -> None:
    world = make_synthetic(SyntheticSpec(n_text=pairs, n_memory=pairs, n_test=1000, seed=0))
    data = BridgeData((world.text_a, world.text_b), (world.image_a, world.audio_b), fingerprint="gpu-check")
    # exact consistency on both sides: the CPU's `auto` would pick the approximation above 100k rows
    cfg = with_overrides(load_train_config("audio_visual"), epochs=epochs, batch_size=batch, backend="exact")
    # consistency (eq. 2) on the device vs the CPU
    t = time.perf_counter()
    on_device = compute_pseudo(cfg, data, device, progress=False)
    _sync(device)
    seconds = time.perf_counter() - t
    on_cpu = compute_pseudo(cfg, data, torch.device("cpu"), progress=False)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(on_device, on_cpu, strict=True))
    print(
        f"consistency {pairs:,} captions x {pairs:,} memory rows on {device}: {seconds:.2f} s; "
        f"max |device - cpu| {diff:.2e}"
    )
    result = train_bridge(cfg, data, device=str(device), progress=False)
    a2i, i2a = score_bridge_on(world, result.bridge)
    print(
        f"training   {pairs:,} pairs, batch {batch}, {epochs} epochs on {device}: {result.samples_per_s:,.0f} pairs/s; "
        f"A2I mAP {a2i.mAP:.2f}, I2A {i2a.mAP:.2f}"
    )
    x = world.test_audio_b[:256]
    here = result.bridge.project("clap", x, modality="audio")
    there = result.bridge.to("cpu").project("clap", x, modality="audio")  # the same weights, moved
    cosine = float(np.min(np.sum(here * there, axis=1)))
    print(f"projection same bridge on {device} vs cpu: min cosine {cosine:.6f}")


def check_ingest(device: torch.device, n_images: int) -> None:
    try:
        from avsearch.embedding.stream import decode_batches, encode_batches, plan_decode
        from avsearch.encoders.registry import load_encoder
        from tests.weights_factory import make_clip_weights
    except ImportError as exc:
        print(f"ingest     skipped: {exc} (carry the open_clip_torch wheel and install it with --no-deps)")
        return
    import tempfile

    from PIL import Image

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_clip_weights(root / "weights")
        files = []
        for i in range(n_images):
            files.append(str(root / f"{i}.jpg"))
            Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(files[-1], quality=90)
        clip = load_encoder("clip-vit-b-32-openai", ["image"], weights_dir=root / "weights", device=str(device))
        batches = [files[i : i + 256] for i in range(0, n_images, 256)]
        plan = plan_decode(clip, len(batches))
        t = time.perf_counter()
        decoded = [d for b in decode_batches(clip.preparer("image"), batches, plan) for d in b]
        decode_rate = n_images / (time.perf_counter() - t)
        t = time.perf_counter()
        half = np.concatenate([v for _, v, _ in encode_batches(clip, "image", batches, plan)])
        _sync(device)
        stream_rate = n_images / (time.perf_counter() - t)
        pixels = clip._normalize(torch.stack(decoded[:512]).float().div(255))
        ref = clip.encode_pixels(pixels)  # the model's own precision (fp16 on CUDA)
        clip._model.float()
        clip.dtype = torch.float32
        fp32 = clip.encode_pixels(pixels)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            bf16 = clip.encode_pixels(pixels)
        print(
            f"ingest     {n_images} JPEG 640x480 on {device}, {plan.workers} decode {plan.mode}: stream "
            f"{stream_rate:,.0f} images/s, decode only {decode_rate:,.0f}/s (ratio {stream_rate / decode_rate:.2f}); "
            f"cosine to fp32: model precision min {np.sum(ref * fp32, 1).min():.5f}, bf16 autocast min "
            f"{np.sum(bf16 * fp32, 1).min():.5f}; stream rows {len(half)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a CPU, or a smoke test)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quick = args.quick or device.type == "cpu"
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "no GPU: the same checks on the CPU"
    print(f"gpu_check on {device} ({name}); torch {torch.__version__}, numpy {np.__version__}")
    check_search(device, n=100_000 if quick else 1_000_000)
    check_bridge(device, pairs=4_000 if quick else 100_000, batch=1024 if quick else 10_240, epochs=2 if quick else 5)
    check_ingest(device, n_images=128 if quick else 5_000)


if __name__ == "__main__":
    main()
