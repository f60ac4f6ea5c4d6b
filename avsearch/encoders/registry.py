"""Encoder registry: names -> specs (configs/encoders.toml) -> loaded encoders, open_clip style.

Each encoder names a factory by dotted string ("module:function"), imported only when that encoder
is asked for, so a missing optional module (e.g. the ULIP-2 one) fails only for that encoder.
Loaded encoders are cached per (name, modalities, weights folder, device): a process loads each
tower it needs once.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avsearch.encoders.base import Encoder
from avsearch.errors import ConfigError
from avsearch.modalities import MODALITIES
from avsearch.settings import configs_dir
from avsearch.timings import stage

if TYPE_CHECKING:  # torch loads with the first torch encoder: a tower on ONNX Runtime needs none
    import torch

log = logging.getLogger(__name__)

_SPEC_FIELDS = ("space", "modalities", "dim", "factory", "files")


@dataclass(frozen=True)
class EncoderSpec:
    """One registered encoder. `options` holds its preprocessing/architecture keys from the TOML."""

    name: str
    space: str
    modalities: tuple[str, ...]
    dim: int
    factory: str  # "package.module:function"
    files: tuple[str, ...]  # keys of [files.*] entries it needs
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@lru_cache(maxsize=1)
def _config() -> dict[str, Any]:
    with (configs_dir() / "encoders.toml").open("rb") as fh:
        return tomllib.load(fh)


@lru_cache(maxsize=1)
def _specs() -> dict[str, EncoderSpec]:
    specs: dict[str, EncoderSpec] = {}
    for name, entry in _config().get("encoders", {}).items():
        missing = [k for k in _SPEC_FIELDS if k not in entry]
        if missing:
            raise ConfigError(f"encoders.toml: [encoders.{name}] lacks {', '.join(missing)}")
        bad = [m for m in entry["modalities"] if m not in MODALITIES]
        if bad:
            raise ConfigError(f"encoders.toml: [encoders.{name}] unknown modalities {bad}")
        options = {k: v for k, v in entry.items() if k not in _SPEC_FIELDS}
        specs[name] = EncoderSpec(
            name=name,
            space=entry["space"],
            modalities=tuple(entry["modalities"]),
            dim=int(entry["dim"]),
            factory=entry["factory"],
            files=tuple(entry["files"]),
            options=options,
        )
    return specs


def list_encoders() -> list[str]:
    """Registered encoder names, sorted."""
    return sorted(_specs())


def get_spec(name: str) -> EncoderSpec:
    """The spec of a registered encoder; unknown names raise ConfigError listing the valid ones."""
    specs = _specs()
    if name not in specs:
        raise ConfigError(f"unknown encoder {name!r}; valid names: {', '.join(sorted(specs))}")
    return specs[name]


def embed_routes() -> dict[str, list[str]]:
    """Modality -> encoder names that `avsearch embed` runs on it ([embed] in encoders.toml)."""
    section = _config().get("embed", {})
    return {m: list(section.get(m, [])) for m in MODALITIES}


def embed_option(key: str, default: Any) -> Any:
    return _config().get("embed", {}).get(key, default)


def _import_factory(dotted: str, encoder: str) -> Callable[..., Encoder]:
    module_name, _, attr = dotted.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"encoder {encoder!r} is not available: cannot import {dotted} ({exc})") from exc


_cache: dict[tuple[str, tuple[str, ...], str, str], Encoder] = {}
_lock = threading.Lock()
_onnx = {"on": False}  # towers on ONNX Runtime where exported (encoders/onnx_towers.py): `avsearch query`


def use_onnx(on: bool = True) -> None:
    """Let single towers on the CPU run on ONNX Runtime from their cached export (and export a tower after
    its torch load, for the next process). Queries turn it on; indexing keeps torch."""
    _onnx["on"] = on


def load_encoder(
    name: str,
    modalities: Sequence[str] | None = None,
    weights_dir: Path | str | None = None,
    device: str | torch.device | None = None,
) -> Encoder:
    """Load (once per process) the towers of encoder `name` for `modalities` (default: all of them).

    weights_dir: offline weights folder (else AVSEARCH_WEIGHTS, hub caches, then download).
    device: "cpu", "cuda", ...; default CUDA when present (fp16 there), else CPU (fp32).
    """
    spec = get_spec(name)
    wanted = tuple(sorted(set(modalities or spec.modalities)))
    unknown = [m for m in wanted if m not in spec.modalities]
    if unknown:
        raise ConfigError(f"encoder {name!r} encodes {', '.join(spec.modalities)}, not {', '.join(unknown)}")
    where = str(Path(weights_dir).expanduser()) if weights_dir else ""
    if _onnx["on"]:
        from avsearch.encoders import onnx_towers

        key = (name, wanted, where, f"onnx:{device}")
        with _lock:
            if key not in _cache:
                with stage(f"load {name} ({', '.join(wanted)})"):
                    found = onnx_towers.load_onnx_encoder(spec, wanted, weights_dir, device)
                if found is not None:
                    _cache[key] = found
            if key in _cache:
                return _cache[key]
    return _load_torch(spec, wanted, weights_dir, device, where)


def _load_torch(
    spec: EncoderSpec, wanted: tuple[str, ...], weights_dir: Path | str | None, device: Any, where: str
) -> Encoder:
    import torch

    from avsearch.device import pick_device

    dev = device if isinstance(device, torch.device) else pick_device(device)
    key = (spec.name, wanted, where, str(dev))
    with _lock:
        if key not in _cache:
            with stage(f"load {spec.name} ({', '.join(wanted)})"):
                _cache[key] = _build(spec, wanted, weights_dir, dev)
                if _onnx["on"]:
                    from avsearch.encoders.onnx_towers import export_after_load

                    export_after_load(_cache[key], spec, wanted, weights_dir)
        return _cache[key]


def _build(spec: EncoderSpec, wanted: tuple[str, ...], weights_dir: Path | str | None, dev: torch.device) -> Encoder:
    factory = _import_factory(spec.factory, spec.name)
    offered = {"spec": spec, "modalities": wanted, "weights_dir": weights_dir, "device": dev}
    # Pass only what the factory declares, so encoder modules written apart stay compatible.
    params = inspect.signature(factory).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in offered.items() if takes_all or k in params}
    log.info("loading encoder %s (%s) on %s", spec.name, ", ".join(wanted), dev)
    return factory(**kwargs)


def clear_cache() -> None:
    """Forget loaded encoders (tests; freeing memory)."""
    with _lock:
        _cache.clear()
