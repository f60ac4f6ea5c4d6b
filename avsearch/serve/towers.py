"""The runtime of each query tower in `avsearch serve`: ONNX Runtime for the towers listed in
configs/serve.toml ([search] onnx_towers), torch for the others.

A listed tower is loaded from its export (encoders/onnx_towers.py) when there is one for these weights;
otherwise it is loaded on torch once, exported and checked there (the export is not used when it is not
faithful), and loaded again from the export, the torch copy being dropped. ONNX Runtime computes a whole
forward without the GIL; torch takes it between operations (about a sixth of a text encode's time,
measured with py-spy --gil). Which is cheaper depends on the tower: see configs/serve.toml.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

from avsearch.embedding.models import EncoderLoader
from avsearch.encoders.base import Encoder

log = logging.getLogger(__name__)


def tower_name(encoder: str, tower: str) -> str:
    """How configs/serve.toml names a tower: "<encoder>:<tower>", e.g. "clip-vit-b-32-openai:image"."""
    return f"{encoder}:{tower}"


def serve_loader(weights_dir: str | Path | None, device: str | None, onnx_towers: Collection[str]) -> EncoderLoader:
    """An EncoderLoader putting the towers named in `onnx_towers` on ONNX Runtime (where they can run
    there: the CPU, an export faithful to torch, AVSEARCH_ONNX not 0) and the others on torch."""

    def load(name: str, towers: tuple[str, ...]) -> Encoder:
        from avsearch.encoders.registry import load_encoder

        if len(towers) == 1 and tower_name(name, towers[0]) in onnx_towers:
            return _on_onnx(name, towers, weights_dir, device)
        return load_encoder(name, towers, weights_dir, device)

    return load


def _on_onnx(name: str, towers: tuple[str, ...], weights_dir: str | Path | None, device: str | None) -> Encoder:
    """The tower from its export; else loaded on torch, exported, and loaded from the export (the torch
    copy when it cannot be: not on the CPU, turned off, an export that failed or is not faithful)."""
    from avsearch.encoders import onnx_towers
    from avsearch.encoders.registry import clear_cache, get_spec, load_encoder

    spec = get_spec(name)
    found = onnx_towers.load_onnx_encoder(spec, towers, weights_dir, device)
    if found is not None:
        return found
    on_torch = load_encoder(name, towers, weights_dir, device)
    if not (onnx_towers.supported(spec, towers) and onnx_towers.enabled() and onnx_towers.on_cpu(device)):
        return on_torch
    onnx_towers.export_after_load(on_torch, spec, towers, weights_dir)  # logs why when it cannot
    found = onnx_towers.load_onnx_encoder(spec, towers, weights_dir, device)
    if found is None:
        return on_torch
    log.info("%s: exported, now on ONNX Runtime", tower_name(name, towers[0]))
    del on_torch
    clear_cache()  # the registry's torch copy: the encoders the server uses, it holds itself
    return found
