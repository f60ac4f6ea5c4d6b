"""The encoders and bridges an index uses, loaded on first use, with the compatibility checks.

Nothing is loaded until a file must be embedded (a run with no changes loads no model). Each encoder's
fingerprint is checked against the manifest when it is loaded, before any row it produces is written;
each bridge's when it is loaded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avsearch.encoders.base import Encoder
from avsearch.errors import IncompatibleError, InputError
from avsearch.modalities import BACKENDS, BOTH, CAVMAE, CMCR, FILE_MODALITIES, TEXT
from avsearch.settings import load_sections
from avsearch.store.manifest import BridgeRef, Manifest, ModalityEntry, backend_table
from avsearch.store.table_schema import NATIVE

if TYPE_CHECKING:  # torch comes with them: `info` and `query --id` load no model and need no torch
    from avsearch.bridge.model import Bridge, BridgeMeta

log = logging.getLogger(__name__)


# (encoder registry name, towers to load) -> encoder; tests may pass their own.
EncoderLoader = Callable[[str, tuple[str, ...]], Encoder]


def plan_modalities(metas: Sequence[BridgeMeta]) -> dict[str, ModalityEntry]:
    """File modalities an index over these bridges can hold, each with the encoder `avsearch embed` uses
    for it (configs/encoders.toml [embed]) when a bridge has a side for that encoder."""
    from avsearch.encoders.registry import embed_routes, get_spec

    routes = embed_routes()
    sides = {side.encoder: side for meta in metas for side in meta.sides}
    entries = {}
    for modality in FILE_MODALITIES:
        encoder = next((e for e in routes.get(modality, []) if e in sides), None)
        if encoder is not None:
            side = sides[encoder]
            has_text = TEXT in get_spec(encoder).modalities
            entries[modality] = ModalityEntry(encoder, side.space, side.dim, text=has_text)
    if not entries:
        raise IncompatibleError("the bridge(s) given connect no encoder that indexes audio, images or 3D")
    return entries


@dataclass(frozen=True)
class BackendSettings:
    default: str = CMCR  # backend of a new index and of queries without --backend
    cavmae_encoder: str = "cavmae-scale-plus-plus"  # registry name of the CAV-MAE weights a new index uses


@dataclass(frozen=True)
class BackendConfig:
    backends: BackendSettings = BackendSettings()


def load_backend_config() -> BackendSettings:
    """configs/backends.toml [backends]: the default backend and which CAV-MAE weights an index uses."""
    return load_sections(BackendConfig, "backends.toml").backends


def parse_backends(name: str | None) -> tuple[str, ...]:
    """ "cmcr", "cavmae", "both" (or None: the configured default) -> the backends meant, in BACKENDS order."""
    name = name or load_backend_config().default
    if name == BOTH:
        return BACKENDS
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)} or {BOTH}")
    return (name,)


def backend_entries(backend: str) -> dict[str, ModalityEntry]:
    """Tables (name -> entry) of a backend other than C-MCR: one per file modality its encoder embeds."""
    from avsearch.encoders.registry import get_spec

    if backend != CAVMAE:
        raise InputError(f"backend {backend!r} has no tables of its own; valid: {CAVMAE}")
    name = load_backend_config().cavmae_encoder
    spec = get_spec(name)
    return {
        backend_table(backend, m): ModalityEntry(name, spec.space, spec.dim, backend=backend, kind=m)
        for m in FILE_MODALITIES
        if m in spec.modalities
    }


def bridge_ref(meta: BridgeMeta, fingerprint: str, path: Path) -> BridgeRef:
    return BridgeRef(meta.name, fingerprint, str(path), list(meta.spaces), meta.head.out_dim)


def default_loader(weights_dir: Path | None, device: str | None) -> EncoderLoader:
    def load(name: str, towers: tuple[str, ...]) -> Encoder:
        from avsearch.encoders.registry import load_encoder  # heavy import, only when a model is needed

        return load_encoder(name, towers, weights_dir, device)

    return load


class Models:
    """Encoders (by name and tower) and bridges (by name) of one index, loaded on first use."""

    def __init__(
        self,
        manifest: Manifest,
        where: str,
        loader: EncoderLoader,
        device: str | None = None,
        *,
        weights_dir: str | Path | None = None,
        commit: Callable[[], None] | None = None,
    ) -> None:
        self.manifest = manifest
        self.where = where  # the index folder, named in errors
        self.loader = loader
        self.device = device
        self.weights_dir = weights_dir
        self.commit = commit  # saves the manifest; None for readers (queries never write it)
        self._encoders: dict[tuple[str, str], Encoder] = {}
        self._bridges: dict[str, Bridge] = {}
        self._lock = threading.RLock()  # concurrent first queries load a model once

    def encoder(self, name: str, tower: str) -> Encoder:
        """Encoder `name` with `tower` loaded, checked against the fingerprint the index recorded."""
        key = (name, tower)
        if key in self._encoders:
            return self._encoders[key]
        with self._lock:
            return self._load_encoder(name, tower)

    def _load_encoder(self, name: str, tower: str) -> Encoder:
        key = (name, tower)
        if key not in self._encoders:
            enc = self.loader(name, (tower,))
            fp = enc.fingerprint()
            self.manifest.check_encoder(name, fp, self.where)
            if self.manifest.record_encoder(name, fp) and self.commit is not None:
                self.commit()  # recorded before any vector it makes
            self._encoders[key] = enc
        return self._encoders[key]

    def file_encoder(self, table: str) -> Encoder:
        """The encoder (and tower) making the vectors of a table (a C-MCR modality or e.g. "cavmae_audio")."""
        return self.encoder(self.manifest.modalities[table].encoder, self.manifest.kind(table))

    def bridge(self, name: str) -> Bridge:
        if name in self._bridges:
            return self._bridges[name]
        with self._lock:
            if name not in self._bridges:
                if self.commit is None:  # a reader projects a query's vector: numpy, no torch
                    from avsearch.bridge.fast import open_fast_bridge as open_bridge
                else:
                    from avsearch.bridge.io import open_bridge

                bridge = open_bridge(self.bridge_file(name), self.device)
                self.manifest.check_bridge(name, bridge.fingerprint, self.where)
                self._bridges[name] = bridge
            return self._bridges[name]

    def bridge_file(self, name: str) -> Path:
        """Where bridge `name` is read from: the recorded path, else (a released bridge whose weights
        folder moved) the weight file of that name found like any other; its fingerprint is checked."""
        recorded = Path(self.manifest.bridges[name].path)
        if recorded.is_file():
            return recorded
        from avsearch.encoders.weights import find_file, resolve_weight
        from avsearch.errors import ConfigError

        try:
            find_file(recorded.name)
        except ConfigError:  # not a published file: nothing else to look for
            raise InputError(f"{recorded}: bridge file of this index not found (moved or deleted?)") from None
        return resolve_weight(recorded.name, self.weights_dir)

    def project(self, bridge: str, space: str, native: np.ndarray, modality: str) -> np.ndarray:
        """Native vectors (N, d) of `modality` in `space` -> the shared space of `bridge` (N, D)."""
        return self.bridge(bridge).project(space, native, modality=modality)

    def all_vectors(self, table: str, native: np.ndarray) -> dict[str, np.ndarray]:
        """Native vectors (N, d) of a table's rows -> every vector column of the table (a space no bridge
        covers, such as CAV-MAE's, has the native column only)."""
        space = self.manifest.modalities[table].space
        out = {NATIVE: native}
        for ref in self.manifest.bridges_of(space):
            out[ref.column] = self.project(ref.name, space, native, self.manifest.kind(table))
        return out

    def encode_captions(self, name: str, captions: Sequence[str]) -> np.ndarray:
        """Captions through the text tower of encoder `name`: (N, d) float32."""
        return self.encoder(name, TEXT).encode_text(list(captions))
