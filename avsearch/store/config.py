"""Typed settings of the search index, read from configs/search.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from avsearch.errors import ConfigError
from avsearch.settings import configs_dir

CONFIG_NAME = "search.toml"


@dataclass(frozen=True)
class IndexConfig:
    # Bridges a new index is made with when `avsearch index` gets no --bridge: published weight-file
    # names, found like every other weight file (weights folder, caches, download when connected).
    default_bridges: tuple[str, ...] = ("clap_clip.pt", "ulip_clip.pt")


@dataclass(frozen=True)
class IngestConfig:
    batch_size: int = 32  # files per encoder call and per committed write
    follow_symlinks: bool = True
    skip_hidden: bool = True


@dataclass(frozen=True)
class AnnConfig:
    exact_max_vectors: int = 50_000
    memory_budget_gb: float = 4.0
    target_recall: float = 0.95
    tuning_margin: float = 0.02
    max_tuning_queries: int = 1000
    lists_per_sqrt_n: float = 4.0
    min_points_per_list: int = 39
    max_train_points: int = 200_000
    tuning_captions: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchConfig:
    ingest: IngestConfig
    ann: AnnConfig
    index: IndexConfig = IndexConfig()


def _build(cls: type, section: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
    return cls(**values)


def load_search_config(path: str | Path | None = None) -> SearchConfig:
    """Read search.toml (the bundled one unless `path` is given); missing keys take the defaults."""
    path = Path(path) if path is not None else configs_dir() / CONFIG_NAME
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"index", "ingest", "ann"})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; valid: ann, index, ingest")
    return SearchConfig(
        ingest=_build(IngestConfig, data.get("ingest", {}), f"{path} [ingest]"),
        ann=_build(AnnConfig, data.get("ann", {}), f"{path} [ann]"),
        index=_build(IndexConfig, data.get("index", {}), f"{path} [index]"),
    )
