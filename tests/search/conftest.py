"""Fixtures for the search tests: a random-weight audio-visual bridge file and media folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avsearch.bridge.heads import HeadSpec
from avsearch.bridge.io import save_bridge
from avsearch.bridge.model import Bridge, BridgeMeta, Side
from tests.encoder_fixtures import av_weights_dir  # noqa: F401


def make_bridge(path: Path, seed: int = 0) -> Path:
    """A randomly initialised audio-visual bridge (real architecture, untrained weights), saved."""
    torch.manual_seed(seed)
    meta = BridgeMeta(
        name="audio_visual",
        overlap="text",
        sides=(
            Side("clip", "clip-vit-b-32-openai", 512, "image"),
            Side("clap", "clap-630k-fusion", 512, "audio"),
        ),
        head=HeadSpec(kind="mlp", in_dim=512, hidden=1024, out_dim=512),
    )
    save_bridge(Bridge(meta), path)
    return path


def make_3d_bridge(path: Path, seed: int = 3) -> Path:
    """A randomly initialised CLIP-text <-> ULIP point-cloud bridge (real architecture), saved."""
    torch.manual_seed(seed)
    meta = BridgeMeta(
        name="pointcloud_text",
        overlap="image",
        sides=(Side("clip", "clip-vit-b-32-openai", 512, "text"), Side("ulip", "ulip2-pointbert", 512, "pointcloud")),
        head=HeadSpec(kind="mlp"),
    )
    save_bridge(Bridge(meta), path)
    return path


@pytest.fixture(scope="session")
def bridge_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bridge(tmp_path_factory.mktemp("bridge") / "av.safetensors")


@pytest.fixture(scope="session")
def other_bridge_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bridge(tmp_path_factory.mktemp("bridge2") / "other.safetensors", seed=1)
