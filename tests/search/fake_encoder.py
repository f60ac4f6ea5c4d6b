"""A FAKE encoder for pipeline tests only (it is not a model and never ships).

It decodes files with the real avsearch.media decoders, so corrupt files fail exactly as with the real
encoders, and turns the decoded content into a deterministic unit vector (a fixed random projection of
a downsampled signal). It lets tests index hundreds of files in seconds; the end-to-end tests use the
real CLIP and CLAP architectures.

Like the real encoders (CLIP, CLAP, ULIP-2, CAV-MAE) it has `preparer(modality)`, a picklable model-free
decode step, and `encode_prepared(modality, items)`, so `index` and `embed` decode its files in the
workers of avsearch/embedding/stream.py ahead of the "model", and a bad file fails there, as in a real
run; `encode_files` (queries) is prepare + encode_prepared, as in the real encoders.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avsearch.errors import ConfigError
from avsearch.media.audio import audio_blocks, load_audio
from avsearch.media.image import load_image
from avsearch.media.pointcloud import load_pointcloud
from avsearch.modalities import AUDIO, IMAGE, POINTCLOUD, TEXT


class FakePreparer:
    """The fake's decode step: one file -> a 256-value signal, by the real decoders (picklable, no model)."""

    def __init__(self, modality: str) -> None:
        self.modality = modality

    sample_rate = 16_000

    def __call__(self, path: Path) -> np.ndarray:
        if self.modality == IMAGE:
            return self.from_image(load_image(path))
        if self.modality == AUDIO:
            return self.from_samples(self.load(path))
        if self.modality == POINTCLOUD:
            signal = np.resize(np.sort(load_pointcloud(path), axis=0).reshape(-1), 256)
        else:
            raise ValueError(self.modality)
        return signal - signal.mean() + 1e-3

    # as the real preparers: a video's frames and a long recording's segments (avsearch/indexing/moments.py)
    def from_image(self, image) -> np.ndarray:
        signal = np.asarray(image.convert("L").resize((16, 16)), np.float32).reshape(-1)
        return signal - signal.mean() + 1e-3

    def load(self, path: Path) -> np.ndarray:
        return load_audio(path, self.sample_rate)

    def blocks(self, path: Path):  # noqa: ANN201 - as ClapAudioPreparer: a long recording cut while read
        return audio_blocks(path, self.sample_rate)

    def from_samples(self, wave: np.ndarray) -> np.ndarray:
        signal = np.resize(wave, 256)
        return signal - signal.mean() + 1e-3


class FakeEncoder:
    def __init__(self, name: str, space: str, modalities: tuple[str, ...], dim: int = 512) -> None:
        self.name, self.space, self.modalities, self.dim = name, space, modalities, dim
        self.files_encoded = 0
        self._proj = np.random.default_rng(len(name)).standard_normal((256, dim)).astype(np.float32)

    def _unit(self, x: np.ndarray) -> np.ndarray:
        v = x.astype(np.float32) @ self._proj
        return (v / max(float(np.linalg.norm(v)), 1e-9)).astype(np.float32)

    def preparer(self, modality: str) -> FakePreparer:
        if modality not in self.modalities:
            raise ConfigError(f"{self.name} encodes {', '.join(self.modalities)} files, not {modality}")
        return FakePreparer(modality)

    def prepare(self, modality: str, path: Path) -> np.ndarray:
        return self.preparer(modality)(path)

    def encode_prepared(self, modality: str, items: Sequence[np.ndarray]) -> np.ndarray:
        self.files_encoded += len(items)
        if not items:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._unit(x) for x in items])

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        return self.encode_prepared(modality, [self.prepare(modality, Path(p)) for p in paths])

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        assert TEXT in self.modalities
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        return np.stack([self._unit(np.random.default_rng(s).standard_normal(256)) for s in seeds])

    def fingerprint(self) -> str:
        return f"{self.name}:fake-for-tests"


class FakeLoader:
    """EncoderLoader for index_folder/SearchEngine: one FakeEncoder per (name, towers)."""

    def __init__(self) -> None:
        self.loaded: dict[tuple[str, tuple[str, ...]], FakeEncoder] = {}

    def __call__(self, name: str, towers: tuple[str, ...]) -> FakeEncoder:
        if name.startswith("cavmae"):  # CAV-MAE's audio-visual space: audio and pictures, 768-d
            return self.loaded.setdefault((name, towers), FakeEncoder(name, "cavmae", towers, dim=768))
        space = "clip" if name.startswith("clip") else "ulip" if name.startswith("ulip") else "clap"
        return self.loaded.setdefault((name, towers), FakeEncoder(name, space, towers))

    @property
    def files_encoded(self) -> int:
        return sum(e.files_encoded for e in self.loaded.values())
