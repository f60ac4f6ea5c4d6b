"""The first `avsearch classify3d`'s prompt encoding: 40 ModelNet40 labels x 64 templates through CLIP text.

    .venv/bin/python benchmarks/clip_text.py [--device cpu] [--labels 40] [--templates 64] [--weights-dir DIR]

The first classify3d on a weights folder encodes every label's prompts (configs/labels/modelnet40.txt x
configs/prompts_3d.toml: 2,560 texts) before it can classify (then they are cached on disk). CLIP's
text tower is causal and pooled at the end-of-text token, so ClipEncoder.encode_text runs it only up to
each batch's furthest EOT, batching prompts shortest first (avsearch.encoders.clip.encode_text_tokens).
Measured in one run, on the same encoder and texts:

  full      encode_text(full_context=True): upstream's 77-token forward, input order (the old code);
  trimmed   the same batches (input order), each cut after its furthest EOT;
  sorted    encode_text(): trimmed, batches of similar lengths (what classify3d, query and embed run).

Per mode: wall seconds, CPU seconds of this process (all threads), mean tokens per forward row, and
the largest |difference| / smallest cosine to the full-context vectors. Then one short query text
(what `avsearch query "..."` encodes) both ways. Weights are RANDOM of the real ViT-B/32 architecture
(tests/weights_factory.py) unless --weights-dir names a folder holding ViT-B-32.pt: the speed does not
depend on the values.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.weights_factory

from avsearch.encoders.clip import encode_text_tokens, text_pool_positions  # noqa: E402
from avsearch.encoders.registry import load_encoder  # noqa: E402
from avsearch.encoders.runtime import as_numpy, run_batched  # noqa: E402
from avsearch.search.classify3d import load_labels, load_templates, prompt_text  # noqa: E402
from tests.weights_factory import make_clip_weights  # noqa: E402


def _measure(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _tokens_per_row(lengths: torch.Tensor, batch: int, trim: bool) -> float:
    """Mean positions per row the transformer runs, for batches of `batch` rows in the given order."""
    if not trim:
        return 77.0
    parts = lengths.split(batch)
    return sum(float(p.max()) * len(p) for p in parts) / len(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--labels", type=int, default=40, help="the first N ModelNet40 labels")
    parser.add_argument("--templates", type=int, default=64, help="the first N templates")
    parser.add_argument("--weights-dir", type=Path, default=None)
    args = parser.parse_args()
    labels = load_labels("modelnet40")[: args.labels]
    templates = load_templates()[: args.templates]
    texts = [t.format(prompt_text(label)) for label in labels for t in templates]  # as label_embeddings
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights_dir or make_clip_weights(Path(tmp) / "weights")
        enc = load_encoder("clip-vit-b-32-openai", ["text"], weights_dir=weights, device=args.device)
    model = enc._model
    tokens = enc.tokenizer(texts)
    lengths = text_pool_positions(model, tokens) + 1
    print(
        f"{len(labels)} labels x {len(templates)} templates = {len(texts):,} prompts; device {args.device}, "
        f"batch {enc.text_batch}, torch threads {torch.get_num_threads()}; EOT-inclusive lengths "
        f"{int(lengths.min())}..{int(lengths.max())} (mean {float(lengths.float().mean()):.1f}) of 77"
    )

    def trimmed_input_order() -> np.ndarray:
        with torch.inference_mode():
            fwd = lambda b: encode_text_tokens(model, b.to(enc.device))  # noqa: E731
            return as_numpy(run_batched(fwd, tokens, enc.text_batch), enc.dim)

    enc.encode_text(texts[:8])  # warm-up (allocator, thread pool)
    full, full_wall, full_cpu = _measure(lambda: enc.encode_text(texts, full_context=True))
    rows = [("full (old)", full, full_wall, full_cpu, _tokens_per_row(lengths, enc.text_batch, False))]
    out, wall, cpu = _measure(trimmed_input_order)
    rows.append(("trimmed", out, wall, cpu, _tokens_per_row(lengths, enc.text_batch, True)))
    out, wall, cpu = _measure(lambda: enc.encode_text(texts))
    rows.append(("sorted (new)", out, wall, cpu, _tokens_per_row(lengths.sort().values, enc.text_batch, True)))
    print(f"{'mode':<14}{'wall s':>9}{'CPU s':>9}{'x faster':>10}{'tokens/row':>12}{'max |diff|':>12}{'min cos':>11}")
    for name, vectors, wall, cpu, per_row in rows:
        diff = float(np.abs(vectors - full).max())
        cos = float((vectors.astype(np.float64) * full).sum(axis=1).min())
        print(f"{name:<14}{wall:>9.2f}{cpu:>9.2f}{full_wall / wall:>10.1f}{per_row:>12.1f}{diff:>12.2e}{cos:>11.7f}")

    query = ["a dog barking in the rain"]
    enc.encode_text(query)
    for name, full_context in (("full (old)", True), ("sorted (new)", False)):
        best = min(_measure(lambda fc=full_context: enc.encode_text(query, full_context=fc))[1] for _ in range(5))
        print(f"one query text, {name}: {1000 * best:.1f} ms (best of 5)")


if __name__ == "__main__":
    main()
