"""Typed settings of `avsearch serve`, read from configs/serve.toml."""

from __future__ import annotations

import os
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
class SearchLimits:
    parallel: int = 0  # searches computed at once; 0: one per CPU core
    threads: int = 0  # FAISS and torch threads of each search; 0: the cores shared out (at least 1)
    onnx_towers: tuple[str, ...] = ()  # "<encoder>:<tower>" run on ONNX Runtime (serve/towers.py)

    def __post_init__(self) -> None:
        for name in ("parallel", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"[search] {name} = {getattr(self, name)}: expected 0 (auto) or more")
        for tower in self.onnx_towers:
            encoder, _, part = str(tower).partition(":")
            if not encoder or not part:
                raise ConfigError(f"[search] onnx_towers: {tower!r}: expected '<encoder>:<tower>'")

    def resolved(self, cores: int | None = None) -> tuple[int, int]:
        """(searches at once, threads per search) on a machine of `cores` cores (default: this one)."""
        cores = cores or os.cpu_count() or 1
        parallel = self.parallel or cores
        return parallel, self.threads or max(1, cores // parallel)


@dataclass(frozen=True)
class ServeConfig:
    connections: ConnectionLimits = ConnectionLimits()
    search: SearchLimits = SearchLimits()


def load_serve_config(path: str | Path | None = None) -> ServeConfig:
    """Read serve.toml (the bundled one unless `path` is given); missing keys take the defaults."""
    return load_sections(ServeConfig, CONFIG_NAME, path)
