"""Typed settings of `avsearch serve`, read from configs/serve.toml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avsearch.errors import ConfigError
from avsearch.settings import load_sections

CONFIG_NAME = "serve.toml"


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 64  # open at once; more are answered 503 and closed
    head_timeout: float = 10.0  # s to send the request line and headers
    body_timeout: float = 120.0  # s to send the whole body
    keep_alive: int = 5  # s an idle kept-alive connection stays open

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ConfigError(f"[connections] max_connections = {self.max_connections}: expected 1 or more")
        for name in ("head_timeout", "body_timeout", "keep_alive"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"[connections] {name} = {getattr(self, name)}: expected a positive number")


@dataclass(frozen=True)
class ServeConfig:
    connections: ConnectionLimits = ConnectionLimits()


def load_serve_config(path: str | Path | None = None) -> ServeConfig:
    """Read serve.toml (the bundled one unless `path` is given); missing keys take the defaults."""
    return load_sections(ServeConfig, CONFIG_NAME, path)
