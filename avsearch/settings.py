"""Process-wide settings read from the environment (typed, in one place)."""

from __future__ import annotations

import os
import re
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from avsearch.errors import ConfigError

T = TypeVar("T")

# Environment variables a user may set; documented in the README.
ENV_WEIGHTS = "AVSEARCH_WEIGHTS"
ENV_INDEX_DIR = "AVSEARCH_INDEX_DIR"
ENV_DEVICE = "AVSEARCH_DEVICE"
ENV_CACHE = "AVSEARCH_CACHE"


@dataclass(frozen=True)
class Settings:
    weights_dir: Path | None  # offline weights folder (files under their published names)
    index_dir: Path | str  # where `avsearch index` keeps its tables without --index-dir (a URI stays a str)
    device: str | None  # "cpu", "cuda", "cuda:1"; None = CUDA when present, else CPU
    cache_dir: Path  # avsearch's own cache: downloads without a hub cache, prompt embeddings


def load_settings() -> Settings:
    weights = os.environ.get(ENV_WEIGHTS)
    return Settings(
        weights_dir=Path(weights).expanduser() if weights else None,
        index_dir=_folder_or_uri(os.environ.get(ENV_INDEX_DIR, "indexes/default")),
        device=os.environ.get(ENV_DEVICE) or None,
        cache_dir=Path(os.environ.get(ENV_CACHE, "~/.cache/avsearch")).expanduser(),
    )


def _folder_or_uri(value: str) -> Path | str:
    """A folder as a Path; "s3://bucket/path" and other URIs kept whole (Path would fold the "//")."""
    return value if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value) else Path(value).expanduser()


def configs_dir() -> Path:
    """The folder of bundled TOML configs: inside the wheel, or the checkout's configs/."""
    bundled = Path(__file__).parent / "_configs"
    if bundled.is_dir():
        return bundled
    return Path(__file__).resolve().parent.parent / "configs"


def load_sections(cls: type[T], name: str, path: str | Path | None = None) -> T:
    """A typed settings file: configs/<name> (or `path`) read into the dataclass `cls`, whose fields are
    dataclasses, one per TOML table. Missing keys and tables take the defaults; unknown ones are errors."""
    import tomllib  # here: a command that reads no config (`avsearch info`) does not import it

    path = Path(path) if path is not None else configs_dir() / name
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    tables = typing.get_type_hints(cls)  # table name -> its dataclass
    unknown = sorted(set(data) - set(tables))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; valid: {', '.join(sorted(tables))}")
    return cls(**{table: _section(tables[table], section, f"{path} [{table}]") for table, section in data.items()})


def _section(cls: type, section: Any, where: str) -> Any:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a table")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})
