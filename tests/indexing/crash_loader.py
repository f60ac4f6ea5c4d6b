"""Test-only: the FAKE encoder (tests/search/fake_encoder.py) in a worker that dies, as a decoder crash or
the OOM killer would end it, when it meets a file named `crash.png`. Importable by Ray workers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tests.search.fake_encoder import FakeLoader

CRASH = "crash.png"


class CrashingEncoder:
    """Files encoded one call at a time (no decode step of its own), so it sees their paths."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name, self.space, self.modalities, self.dim = inner.name, inner.space, inner.modalities, inner.dim

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        if any(Path(p).name == CRASH for p in paths):
            os._exit(1)  # the worker process ends here, nothing unwinds
        return self.inner.encode_files(modality, paths)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_text(texts)

    def fingerprint(self) -> str:
        return self.inner.fingerprint()


class CrashLoader:
    def __init__(self) -> None:
        self.inner = FakeLoader()

    def __call__(self, name: str, towers: tuple[str, ...]) -> Any:
        return CrashingEncoder(self.inner(name, towers))
