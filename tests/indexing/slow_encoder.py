"""Test-only: the FAKE encoder (tests/search/fake_encoder.py) made slow, so a run can be killed while
its batches are being embedded. Importable by Ray workers (the cluster's nodes have the repository on
PYTHONPATH)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tests.search.fake_encoder import FakeEncoder, FakeLoader


class SlowEncoder:
    """A FakeEncoder that takes `seconds` per file: the same vectors and fingerprint, later."""

    def __init__(self, inner: FakeEncoder, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds
        self.name, self.space, self.modalities, self.dim = inner.name, inner.space, inner.modalities, inner.dim

    def preparer(self, modality: str) -> Any:
        return self.inner.preparer(modality)  # decoding is not slowed: the "model" is

    def encode_prepared(self, modality: str, items: Sequence[Any]) -> np.ndarray:
        time.sleep(self.seconds * len(items))
        return self.inner.encode_prepared(modality, items)

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        return self.encode_prepared(modality, [self.inner.prepare(modality, Path(p)) for p in paths])

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_text(texts)

    def fingerprint(self) -> str:
        return self.inner.fingerprint()


class SlowLoader:
    """EncoderLoader: FakeLoader's encoders, each `seconds` per file."""

    def __init__(self, seconds: float) -> None:
        self.inner, self.seconds = FakeLoader(), seconds

    def __call__(self, name: str, towers: tuple[str, ...]) -> Any:
        return SlowEncoder(self.inner(name, towers), self.seconds)
