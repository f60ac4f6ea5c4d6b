"""Lazy access to the encoders and bridges an index needs, with the compatibility checks.

Nothing is loaded until a file must be embedded (a run with no changes loads no model). Each encoder's
fingerprint is checked against the manifest when it is loaded, before any row it produces is written;
each bridge's when it is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from avsearch.bridge.model import Bridge, BridgeMeta
from avsearch.encoders.base import AUDIO, IMAGE, POINTCLOUD, TEXT, Encoder
from avsearch.errors import IncompatibleError
from avsearch.store.manifest import BridgeRef, Manifest, ModalityEntry, save_manifest
from avsearch.store.tables import NATIVE

log = logging.getLogger(__name__)

FILE_MODALITIES = (IMAGE, AUDIO, POINTCLOUD)

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
        index_dir: Path,
        loader: EncoderLoader,
        device: str | None = None,
        read_only: bool = False,
    ) -> None:
        self.manifest = manifest
        self.index_dir = index_dir
        self.loader = loader
        self.device = device
        self.read_only = read_only  # queries never write the manifest
        self._encoders: dict[tuple[str, str], Encoder] = {}
        self._bridges: dict[str, Bridge] = {}

    def encoder(self, name: str, tower: str) -> Encoder:
        """Encoder `name` with `tower` loaded, checked against the fingerprint the index recorded."""
        key = (name, tower)
        if key not in self._encoders:
            enc = self.loader(name, (tower,))
            fp = enc.fingerprint()
            self.manifest.check_encoder(name, fp, str(self.index_dir))
            if self.manifest.record_encoder(name, fp) and not self.read_only:
                save_manifest(self.index_dir, self.manifest)  # recorded before any vector it makes
            self._encoders[key] = enc
        return self._encoders[key]

    def file_encoder(self, modality: str) -> Encoder:
        return self.encoder(self.manifest.modalities[modality].encoder, modality)

    def bridge(self, name: str) -> Bridge:
        if name not in self._bridges:
            from avsearch.bridge.io import open_bridge

            ref = self.manifest.bridges[name]
            bridge = open_bridge(ref.path, self.device)
            self.manifest.check_bridge(name, bridge.fingerprint, str(self.index_dir))
            self._bridges[name] = bridge
        return self._bridges[name]

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
