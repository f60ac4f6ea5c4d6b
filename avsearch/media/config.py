"""Typed media-decoding settings, read once from configs/media.toml."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

from avsearch.errors import ConfigError
from avsearch.settings import load_sections

CONFIG_NAME = "media.toml"


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 178_956_970  # decompression-bomb guard, on the decoded (possibly reduced) size
    reduced_side: int = 2048  # large pictures decode reduced, shorter side kept at least this

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"media [image] {f.name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class MediaConfig:
    image: ImageLimits = ImageLimits()


def load_media_config(path: str | Path | None = None) -> MediaConfig:
    """Read media.toml (the bundled one unless `path` is given); missing keys take the defaults."""
    return load_sections(MediaConfig, CONFIG_NAME, path)


@lru_cache(maxsize=1)
def media_config() -> MediaConfig:
    """The bundled settings, read once per process."""
    return load_media_config()
