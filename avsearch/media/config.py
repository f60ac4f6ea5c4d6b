"""Typed media-decoding settings, read once from configs/media.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from avsearch.errors import ConfigError
from avsearch.settings import configs_dir

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


def _section(cls: type, section: Any, where: str) -> Any:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a table")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return cls(**section)


def load_media_config(path: str | Path | None = None) -> MediaConfig:
    """Read media.toml (the bundled one unless `path` is given); missing keys take the defaults."""
    path = Path(path) if path is not None else configs_dir() / CONFIG_NAME
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"image"})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; valid: image")
    return MediaConfig(image=_section(ImageLimits, data.get("image", {}), f"{path} [image]"))


@lru_cache(maxsize=1)
def media_config() -> MediaConfig:
    """The bundled settings, read once per process."""
    return load_media_config()
