"""Synthetic contrastive spaces for checking the C-MCR method without encoders (tests, benchmarks).

Two spaces ("clip"-like A and "clap"-like B) share nothing but text. Every item is an *event*: a
concept plus an event-specific detail in a small latent space. Each space embeds a modality by its own
random non-linear map of the latent. The world is built so that each part of the method matters for
the reason the paper gives (section 3):

- modality gap (intra-MCR, eq. 9): a media embedding is its text's embedding partly *rotated* by a
  modality-specific orthogonal map, plus a constant offset. The offset alone would be removed by any
  per-kind BatchNorm; the rotation is not, so a head fitted on texts must be taught to carry media
  to the same place, which is what the intra-MCR term does;
- partial coverage (consistency, L_avc, noise): each memory holds only some of the concepts (an image
  memory without the sounds-only concepts, an audio memory without the silent ones), and captions
  describe events more coarsely than media show them (less detail), so pseudo pairs are informative
  but imperfect and the heads must generalise beyond the captions' neighbourhoods;
- modality-private information that the other modalities never see.

Texts are encoded by both spaces (the overlap), images only by A and audio only by B (the unpaired
memories). Test pairs are an image and a sound of the same event of a concept that both memories hold:
they share its concept and part of its detail.

This is data for a measurement, not a model: benchmarks/ablations.py shows on it that the full method
beats every ablation of the paper's table 5 by more than the seed spread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SyntheticSpec:
    concepts: int = 1000  # event classes (many, so fine distinctions and a low temperature matter)
    latent: int = 32  # width of the shared semantic latent
    dim: int = 512  # embedding width of both spaces
    n_text: int = 20_000  # overlap pairs (texts in both spaces)
    n_memory: int = 20_000  # unpaired images (space A) and unpaired sounds (space B), each
    n_test: int = 1_000  # paired (image, sound) test events
    detail: float = 0.7  # scale of the event-specific detail relative to the concept
    shared_detail: float = 0.7  # share of the detail that an event's image and sound both carry
    text_detail: float = 0.35  # captions' detail scale (coarser than the media's `detail`)
    private: float = 0.6  # norm of the modality-specific component
    gap: float = 1.0  # norm of each modality's constant offset
    rotation: float = 0.6  # media: sin of the angle by which a modality-specific rotation turns the semantics
    coverage: float = 0.7  # share of the concepts each memory holds (test events: concepts held by both)
    seed: int = 0


@dataclass(frozen=True)
class SyntheticData:
    text_a: np.ndarray  # (n_text, dim) texts in space A
    text_b: np.ndarray  # (n_text, dim) the same texts in space B
    image_a: np.ndarray  # (n_memory, dim) image memory, space A
    audio_b: np.ndarray  # (n_memory, dim) audio memory, space B
    test_image_a: np.ndarray  # (n_test, dim) image of test event i
    test_audio_b: np.ndarray  # (n_test, dim) sound of test event i

    def save(self, folder: str | Path, space_a: str = "clip", space_b: str = "clap") -> Path:
        """Write the training arrays as `avsearch train` reads them, plus the test pairs."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            f"text.{space_a}.npy": self.text_a,
            f"text.{space_b}.npy": self.text_b,
            f"image.{space_a}.npy": self.image_a,
            f"audio.{space_b}.npy": self.audio_b,
            f"test_image.{space_a}.npy": self.test_image_a,
            f"test_audio.{space_b}.npy": self.test_audio_b,
        }
        for name, arr in files.items():
            np.save(folder / name, arr)
        return folder

    def save_searchable(self, folder: str | Path, space_a: str = "clip", space_b: str = "clap") -> Path:
        """Write the test events as vectors `avsearch index --embeddings` reads: image.<a>.npy and
        audio.<b>.npy with ids "image/event-0000", "audio/event-0000" (same number: same event)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for modality, name, arr in (("image", space_a, self.test_image_a), ("audio", space_b, self.test_audio_b)):
            np.save(folder / f"{modality}.{name}.npy", arr)
            rows = "".join(json.dumps({"source": f"{modality}/event-{i:04d}"}) + "\n" for i in range(len(arr)))
            (folder / f"{modality}.{name}.rows.jsonl").write_text(rows, encoding="utf-8")
        return folder


class _Space:
    """One frozen 'encoder family': a random two-layer tanh map plus per-modality gap and private maps."""

    def __init__(
        self,
        rng: np.random.Generator,
        latent: int,
        dim: int,
        modalities: tuple[str, ...],
        spec: SyntheticSpec,
    ):
        hidden = 4 * latent
        self.w1 = rng.standard_normal((latent, hidden)) / np.sqrt(latent)
        self.b1 = rng.standard_normal(hidden) * 0.5
        self.w2 = rng.standard_normal((hidden, dim)) / np.sqrt(hidden)
        self.gap = {m: _unit(rng.standard_normal(dim)) * spec.gap for m in modalities}
        self.private = {m: rng.standard_normal((latent, dim)) / np.sqrt(latent) for m in modalities}
        # Media semantics are turned by a modality-specific rotation (text keeps the space's own axes).
        self.rotation = {m: np.linalg.qr(rng.standard_normal((dim, dim)))[0] for m in modalities if m != "text"}
        self.spec = spec

    def embed(self, modality: str, z: np.ndarray, private: np.ndarray | None) -> np.ndarray:
        sem = _unit(np.tanh(z @ self.w1 + self.b1) @ self.w2)
        if modality in self.rotation:
            r = self.spec.rotation
            sem = _unit(np.sqrt(1 - r * r) * sem + r * sem @ self.rotation[modality])
        x = sem + self.gap[modality]
        if private is not None:
            x = x + _unit(private @ self.private[modality]) * self.spec.private
        return _unit(x).astype(np.float32)


def make_synthetic(spec: SyntheticSpec = SyntheticSpec()) -> SyntheticData:
    """Generate both spaces' training arrays and paired test items, deterministically from spec.seed."""
    rng = np.random.default_rng(spec.seed)
    centres = rng.standard_normal((spec.concepts, spec.latent))
    space_a = _Space(rng, spec.latent, spec.dim, ("text", "image"), spec)
    space_b = _Space(rng, spec.latent, spec.dim, ("text", "audio"), spec)

    held = max(1, round(spec.coverage * spec.concepts))
    image_concepts, audio_concepts = (rng.permutation(spec.concepts)[:held] for _ in range(2))
    both = np.intersect1d(image_concepts, audio_concepts)
    if both.size == 0:
        both = image_concepts[:1]

    def events(concepts: np.ndarray, n: int, detail: float) -> np.ndarray:
        return centres[rng.choice(concepts, n)] + detail * rng.standard_normal((n, spec.latent))

    def private(n: int) -> np.ndarray:
        return rng.standard_normal((n, spec.latent))

    text_z = events(np.arange(spec.concepts), spec.n_text, spec.text_detail)
    image_z = events(image_concepts, spec.n_memory, spec.detail)
    audio_z = events(audio_concepts, spec.n_memory, spec.detail)
    # Test events: the image and the sound share the concept and `shared_detail` of the detail.
    test_concepts = centres[rng.choice(both, spec.n_test)]
    shared = rng.standard_normal((spec.n_test, spec.latent))
    keep = spec.shared_detail

    def own_view() -> np.ndarray:
        own = rng.standard_normal((spec.n_test, spec.latent))
        return test_concepts + spec.detail * (np.sqrt(keep) * shared + np.sqrt(1 - keep) * own)

    test_image_z, test_audio_z = own_view(), own_view()
    return SyntheticData(
        text_a=space_a.embed("text", text_z, None),
        text_b=space_b.embed("text", text_z, None),
        image_a=space_a.embed("image", image_z, private(spec.n_memory)),
        audio_b=space_b.embed("audio", audio_z, private(spec.n_memory)),
        test_image_a=space_a.embed("image", test_image_z, private(spec.n_test)),
        test_audio_b=space_b.embed("audio", test_audio_z, private(spec.n_test)),
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main(argv: list[str] | None = None) -> None:
    """`python -m avsearch.bridge.synthetic OUT_DIR`: write synthetic training arrays and test pairs."""
    import argparse

    parser = argparse.ArgumentParser(description="Write synthetic C-MCR training data (not a model).")
    parser.add_argument("out", type=Path)
    parser.add_argument("--pairs", type=int, default=SyntheticSpec.n_text)
    parser.add_argument("--test", type=int, default=SyntheticSpec.n_test)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--searchable", type=Path, help="also write the test events for `index --embeddings`")
    args = parser.parse_args(argv)
    spec = SyntheticSpec(n_text=args.pairs, n_memory=args.pairs, n_test=args.test, seed=args.seed)
    data = make_synthetic(spec)
    folder = data.save(args.out)
    print(f"wrote synthetic embeddings to {folder}")
    if args.searchable:
        print(f"wrote the test events as searchable vectors to {data.save_searchable(args.searchable)}")


if __name__ == "__main__":
    main()
