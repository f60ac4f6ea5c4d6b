"""The encoders and bridges an index uses, loaded on first use, with the compatibility checks.

Nothing is loaded until a file must be embedded (a run with no changes loads no model). Each encoder's
fingerprint is checked against the manifest when it is loaded, before any row it produces is written;
each bridge's when it is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avsearch.encoders.base import Encoder
from avsearch.errors import IncompatibleError, InputError
from avsearch.modalities import FILE_MODALITIES, TEXT
from avsearch.store.manifest import BridgeRef, Manifest, ModalityEntry
from avsearch.store.tables import NATIVE

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

    def encoder(self, name: str, tower: str) -> Encoder:
        """Encoder `name` with `tower` loaded, checked against the fingerprint the index recorded."""
        key = (name, tower)
        if key not in self._encoders:
            enc = self.loader(name, (tower,))
            fp = enc.fingerprint()
            self.manifest.check_encoder(name, fp, self.where)
            if self.manifest.record_encoder(name, fp) and self.commit is not None:
                self.commit()  # recorded before any vector it makes
            self._encoders[key] = enc
        return self._encoders[key]

    def file_encoder(self, modality: str) -> Encoder:
        return self.encoder(self.manifest.modalities[modality].encoder, modality)

    def bridge(self, name: str) -> Bridge:
        if name not in self._bridges:
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

    def all_vectors(self, modality: str, native: np.ndarray) -> dict[str, np.ndarray]:
        """Native vectors (N, d) of a file modality -> every vector column of its table."""
        space = self.manifest.modalities[modality].space
        out = {NATIVE: native}
        for ref in self.manifest.bridges_of(space):
            out[ref.column] = self.project(ref.name, space, native, modality)
        return out

    def encode_captions(self, name: str, captions: Sequence[str]) -> np.ndarray:
        """Captions through the text tower of encoder `name`: (N, d) float32."""
        return self.encoder(name, TEXT).encode_text(list(captions))
