"""Fixtures for the 3D tests: a ULIP-2 checkpoint with the real key layout and random weights.

The checkpoint is written the way ULIP's trainer writes it ({'state_dict': {'module.<key>': ...},
'args': Namespace, ...}) with all 462 entries. The point tower holds a randomly initialised
PointBertEncoder; the other towers hold random tensors of the exact shapes. Large tensors are stored
as a strided view of a short random vector (row i = the vector shifted by i), which keeps the files
small and the rows distinct while the loaders see the published shapes.

Also written here: a random CLIP ViT-B/32 state dict under its published name (ViT-B-32.pt, loaded by
the project's CLIP encoder through open_clip) and a random ulip_clip.pt with the released C-MCR layout.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from avsearch.encoders.pointbert import PointBertEncoder
from avsearch.encoders.ulip_checkpoint import ULIP_CHECKPOINT, expected_layout

BIG = 65_536  # larger tensors are stored as a strided view of a short vector


def random_tensor(shape: tuple[int, ...], gen: torch.Generator, scale: float = 0.02) -> torch.Tensor:
    numel = int(np.prod(shape)) if shape else 1
    if numel <= BIG:
        return torch.randn(shape, generator=gen) * scale
    base = torch.randn(sum(shape) - len(shape) + 1, generator=gen) * scale
    return base.as_strided(tuple(shape), (1,) * len(shape))


def random_ulip_state(seed: int = 0, dense_point_tower: bool = True) -> dict[str, torch.Tensor]:
    """All 462 entries (no 'module.' prefix), random values of the published shapes."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in expected_layout().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = 1.0 + torch.rand(shape, generator=gen)
        else:
            state[key] = random_tensor(shape, gen)
    if dense_point_tower:
        torch.manual_seed(seed)
        state |= PointBertEncoder().state_dict()  # default init: a well-conditioned random network
    return state


def save_ulip_checkpoint(state: dict[str, torch.Tensor], folder: Path) -> Path:
    """Write `state` as ULIP's trainer does, under the published file name in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ULIP_CHECKPOINT
    args = argparse.Namespace(model="ULIP_PointBERT", npoints=8192, lr=3e-3, epochs=250)
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}, "args": args}, path)
    return path


def save_clip_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A random open_clip ViT-B-32-quickgelu state dict saved as ViT-B-32.pt."""
    import open_clip

    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        model = open_clip.model.CLIP(**open_clip.get_model_config("ViT-B-32-quickgelu"))
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            state[key] = random_tensor(tuple(value.shape), gen)
        else:
            state[key] = torch.zeros(value.shape, dtype=value.dtype)
    state["logit_scale"] = torch.tensor(4.6052)
    path = folder / "ViT-B-32.pt"
    torch.save(state, path)
    return path


def save_ulip_clip_bridge(folder: Path, seed: int = 0) -> Path:
    """A random ulip_clip.pt with the released keys (Head_A = CLIP side, Head_B = ULIP side)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for head in ("Head_A", "Head_B"):
        state[f"{head}.net.0.weight"] = torch.randn(512, 512, generator=gen) * 0.05
        state[f"{head}.net.0.bias"] = torch.randn(512, generator=gen) * 0.01
        state[f"{head}.net.1.weight"] = 0.5 + torch.rand(512, generator=gen)
        state[f"{head}.net.1.bias"] = torch.randn(512, generator=gen) * 0.01
        state[f"{head}.net.1.running_mean"] = torch.randn(512, generator=gen) * 0.01
        state[f"{head}.net.1.running_var"] = 0.01 + 0.02 * torch.rand(512, generator=gen)
        state[f"{head}.net.1.num_batches_tracked"] = torch.tensor(3080)
    path = folder / "ulip_clip.pt"
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def ulip_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder with pointbert_ULIP-2.pt, ViT-B-32.pt and ulip_clip.pt (all random)."""
    from tests.weights_factory import make_ulip_weights

    folder = make_ulip_weights(tmp_path_factory.mktemp("weights"))  # random_ulip_state(), saved (or its copy)
    save_clip_checkpoint(folder)
    save_ulip_clip_bridge(folder)
    return folder


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never download: a missing file must fail, not fetch.
    monkeypatch.setenv("AVSEARCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def ulip_encoder(ulip_weights_dir: Path):
    """The real ULIP encoder (PointBERT + ViT-B/16 towers) on the random checkpoint, loaded once."""
    from avsearch.encoders.ulip import load_ulip_encoder

    return load_ulip_encoder(("pointcloud", "image"), ulip_weights_dir, "cpu")


@pytest.fixture(scope="session")
def make_cloud() -> Callable[[int, int], np.ndarray]:
    """Points on a noisy ellipsoid: (n, 3) float64, different per seed."""

    def make(n: int = 2000, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        v = rng.normal(size=(n, 3))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return v * rng.uniform(0.5, 2.0, size=3) + rng.normal(scale=0.01, size=(n, 3)) + 3.0

    return make
