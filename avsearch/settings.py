"""Process-wide settings read from the environment (typed, in one place)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Environment variables a user may set; documented in the README.
ENV_WEIGHTS = "AVSEARCH_WEIGHTS"
ENV_INDEX_DIR = "AVSEARCH_INDEX_DIR"
ENV_DEVICE = "AVSEARCH_DEVICE"
ENV_CACHE = "AVSEARCH_CACHE"


@dataclass(frozen=True)
class Settings:
    weights_dir: Path | None  # offline weights folder (files under their published names)
    index_dir: Path  # where `avsearch index` keeps its tables when --index-dir is not given
    device: str | None  # "cpu", "cuda", "cuda:1"; None = CUDA when present, else CPU
    cache_dir: Path  # avsearch's own cache: downloads without a hub cache, prompt embeddings


def load_settings() -> Settings:
    weights = os.environ.get(ENV_WEIGHTS)
    return Settings(
        weights_dir=Path(weights).expanduser() if weights else None,
        index_dir=Path(os.environ.get(ENV_INDEX_DIR, "indexes/default")).expanduser(),
        device=os.environ.get(ENV_DEVICE) or None,
        cache_dir=Path(os.environ.get(ENV_CACHE, "~/.cache/avsearch")).expanduser(),
    )


def configs_dir() -> Path:
    """The folder of bundled TOML configs: inside the wheel, or the checkout's configs/."""
    bundled = Path(__file__).parent / "_configs"
    if bundled.is_dir():
        return bundled
    return Path(__file__).resolve().parent.parent / "configs"
