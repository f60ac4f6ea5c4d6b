"""Zero-shot 3D classification: where to average a label's prompts (configs/prompts_3d.toml `ensemble`).

    python benchmarks/classify3d.py [--seeds 0 1 2] [--heads mlp released_3d] [--pairs 4000] [--epochs 4]

"native" averages the unit CLIP text embeddings of a label's prompts, re-normalises and projects once
(CLIP's and ULIP's protocol); "shared" projects every prompt and averages the projections. With random
encoder weights accuracy means nothing, so this measures both on a synthetic 3D world where it does:
a "clip" space (images, text) and a "ulip" space (images, point clouds), each a random non-linear map
of one semantic latent with per-modality gaps and private components (as avsearch.bridge.synthetic).
A bridge is trained from them with avsearch.bridge.train (config pointcloud_text, shorter), exactly as
`avsearch train` does. Each label's prompts are noisy views of its class centre: a per-template shift of
meaning plus per-prompt noise in the latent, and a per-template style (private) component in CLIP
space. Test clouds are fresh events of each class. Printed per head and seed: top-1/top-5 accuracy of
both ensembles, their top-1 agreement and the mean cosine between their label vectors; then the mean
paired difference (native - shared) in units of its spread over seeds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, replace

import numpy as np

from avsearch.bridge.config import load_train_config, with_overrides
from avsearch.bridge.data import BridgeData, fingerprint_arrays
from avsearch.bridge.train import train_bridge
from avsearch.evaluation.classify3d_eval import topk_accuracy
from avsearch.search.classify3d import Ensemble, label_embeddings


@dataclass(frozen=True)
class World:
    classes: int = 40  # ModelNet40's count
    templates: int = 64  # configs/prompts_3d.toml's count
    latent: int = 32
    dim: int = 512
    detail: float = 1.5  # event-specific detail around a class centre (latent units)
    template_shift: float = 1.0  # how far a template moves a prompt's meaning from the class centre
    prompt_noise: float = 0.5  # per-prompt residual
    private: float = 0.6  # norm of modality-specific (and template-style) components
    gap: float = 1.0  # modality gap offsets


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class _Space:
    """A frozen 'encoder family': random tanh map of the latent, per-modality gap and private maps."""

    def __init__(self, rng: np.random.Generator, w: World, modalities: tuple[str, ...]) -> None:
        hidden = 4 * w.latent
        self.w1 = rng.standard_normal((w.latent, hidden)) / np.sqrt(w.latent)
        self.b1 = rng.standard_normal(hidden) * 0.5
        self.w2 = rng.standard_normal((hidden, w.dim)) / np.sqrt(hidden)
        self.gap = {m: _unit(rng.standard_normal(w.dim)) * w.gap for m in modalities}
        self.private_map = {m: rng.standard_normal((w.latent, w.dim)) / np.sqrt(w.latent) for m in modalities}
        self.private = w.private

    def embed(self, modality: str, z: np.ndarray, private: np.ndarray) -> np.ndarray:
        sem = _unit(np.tanh(z @ self.w1 + self.b1) @ self.w2)
        x = sem + self.gap[modality] + _unit(private @ self.private_map[modality]) * self.private
        return _unit(x).astype(np.float32)


class _Text:
    """Stands in for the CLIP text encoder: looks prompts up in a table (label_embeddings' interface)."""

    def __init__(self, table: dict[str, np.ndarray], dim: int) -> None:
        self.table, self.dim = table, dim

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])

    def fingerprint(self) -> str:
        return "synthetic"


def run(w: World, seed: int, head: str, pairs: int, tests: int, epochs: int, batch: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((w.classes, w.latent))
    clip = _Space(rng, w, ("image", "text"))
    ulip = _Space(rng, w, ("image", "pointcloud"))

    def events(n: int) -> tuple[np.ndarray, np.ndarray]:
        cls = rng.integers(0, w.classes, n)
        return centres[cls] + w.detail * rng.standard_normal((n, w.latent)), cls

    def noise(n: int) -> np.ndarray:
        return rng.standard_normal((n, w.latent))

    image_z, _ = events(pairs)
    image_private = noise(pairs)  # the same image seen by both spaces' image encoders
    overlap = (clip.embed("image", image_z, image_private), ulip.embed("image", image_z, image_private))
    memory = (
        clip.embed("text", events(pairs)[0], noise(pairs)),
        ulip.embed("pointcloud", events(pairs)[0], noise(pairs)),
    )
    names = ["image.clip.npy", "image.ulip.npy", "text.clip.npy", "pointcloud.ulip.npy"]
    data = BridgeData(overlap, memory, fingerprint_arrays(dict(zip(names, (*overlap, *memory), strict=True))))

    config = with_overrides(load_train_config("pointcloud_text"), epochs=epochs, batch_size=batch)
    norm_stats = "shared" if head == "released_3d" else "per_kind"  # as the released ulip_clip.pt / our default
    config = replace(config, head=replace(config.head, kind=head, norm_stats=norm_stats))
    t0 = time.perf_counter()
    bridge = train_bridge(config, data, device="cpu", progress=False).bridge
    train_s = time.perf_counter() - t0

    # Prompts: label c, template t -> centre_c + shift_t + noise in the latent, style_t in CLIP space.
    shifts, styles = w.template_shift * noise(w.templates), noise(w.templates)
    labels = [f"class{c}" for c in range(w.classes)]
    templates = [f"template{t} {{}}" for t in range(w.templates)]
    table = {}
    for c, label in enumerate(labels):
        z = centres[c] + shifts + w.prompt_noise * noise(w.templates)
        for t, emb in zip(templates, clip.embed("text", z, styles), strict=True):
            table[t.format(label)] = emb
    text = _Text(table, w.dim)

    test_z, test_cls = events(tests)
    clouds = bridge.project("ulip", ulip.embed("pointcloud", test_z, noise(tests)), modality="pointcloud")
    out: dict[str, float] = {"train_s": train_s}
    mats: dict[Ensemble, np.ndarray] = {}
    for ensemble in ("native", "shared"):
        mats[ensemble] = label_embeddings(labels, templates, text, bridge, None, ensemble)  # type: ignore[arg-type]
        acc = topk_accuracy(clouds @ mats[ensemble].T, test_cls, (1, 5))
        out[f"{ensemble}_top1"], out[f"{ensemble}_top5"] = 100 * acc[1], 100 * acc[5]
    top1 = {e: (clouds @ m.T).argmax(axis=1) for e, m in mats.items()}
    out["agree"] = 100 * float((top1["native"] == top1["shared"]).mean())
    out["cos"] = float((mats["native"] * mats["shared"]).sum(axis=1).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--heads", nargs="+", default=["mlp", "released_3d"], choices=["mlp", "released_3d"])
    parser.add_argument("--pairs", type=int, default=4_000, help="overlap images (and memory rows per space)")
    parser.add_argument("--tests", type=int, default=2_000, help="test clouds")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()
    w = World()
    print(
        f"synthetic 3D world: {w.classes} classes x {w.templates} templates; {args.pairs:,} pairs; "
        f"{args.tests:,} test clouds; {args.epochs} epochs, batch {args.batch_size}; chance top-1 {100 / w.classes:.1f}"
    )
    print(
        f"{'head':<12}{'seed':>5}{'native top1/top5':>19}{'shared top1/top5':>19}{'agree%':>8}{'cos':>7}{'train s':>9}"
    )
    for head in args.heads:
        diffs = []
        for seed in args.seeds:
            r = run(w, seed, head, args.pairs, args.tests, args.epochs, args.batch_size)
            diffs.append(r["native_top1"] - r["shared_top1"])
            print(
                f"{head:<12}{seed:>5}{r['native_top1']:>11.1f} / {r['native_top5']:<5.1f}"
                f"{r['shared_top1']:>11.1f} / {r['shared_top5']:<5.1f}{r['agree']:>8.1f}{r['cos']:>7.3f}"
                f"{r['train_s']:>9.1f}",
                flush=True,
            )
        spread = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
        print(
            f"{head:<12} native - shared top-1: {statistics.mean(diffs):+.2f} points (spread over seeds {spread:.2f})"
        )


if __name__ == "__main__":
    main()
