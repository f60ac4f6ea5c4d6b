"""Every command module, in the order `avsearch --help` lists them. Each exposes register(app)."""

from __future__ import annotations

from importlib import import_module

import typer

COMMAND_MODULES = (
    "weights",  # list model weight files
    "embed",  # media/captions -> {modality}.{space}.npy
    "train",  # fit a C-MCR bridge
    "calibrate",  # a bridge's scores calibrated on real pairs
    "project",  # native embeddings -> shared space
    "index",  # build/update a search index over a media folder
    "query",  # cross-modal queries
    "info",  # what an index holds
    "serve",  # HTTP API and web gallery over an index
    "classify3d",  # zero-shot 3D classification
    "localize",  # where a sound is in a picture, does it belong
    "evaluate",  # `avsearch eval ...` (retrieval, localize, counterfactual, classify3d)
)


def register_all(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        import_module(f"avsearch.cli.{name}").register(app)
