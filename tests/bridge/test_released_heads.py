"""The released C-MCR heads, imported by avsearch, against an independent forward written here.

The reference below is plain float64 numpy arithmetic on the checkpoint's own state dict, following the
published head layout (shared/REFERENCE.md, "The released C-MCR checkpoints"):

- clap_clip.pt: per side Linear 512->1024, BatchNorm1d, ReLU, Linear 1024->512, BatchNorm1d (no final
  ReLU); Head_A = CLAP side, Head_B = CLIP side; sub-modules net1.{0,1}, net2.{0,1}.
- ulip_clip.pt: per side Linear 512->512, BatchNorm1d, ReLU; Head_A = CLIP side, Head_B = ULIP side;
  sub-module net.{0,1}.
- Inputs are L2-normalised before a head and outputs after it; BatchNorm runs in eval mode (running
  statistics, eps 1e-5).

It uses no avsearch module and no torch.nn layer. The random checkpoints have BatchNorm buffers far from
0/1 (running variances spread over five decades, so eps matters) and the inputs are not unit length,
so swapped heads, a missing normalisation, a dropped or added ReLU or a wrong eps all fail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avsearch.bridge.io import import_released, load_bridge, save_bridge

BN_EPS = 1e-5  # torch.nn.BatchNorm1d's default, which the released heads were trained with

# (layer name, input width, output width, ReLU after the BatchNorm) per side, in forward order.
LAYOUT = {
    "clap_clip": [("net1", 512, 1024, True), ("net2", 1024, 512, False)],
    "ulip_clip": [("net", 512, 512, True)],
}
# Which released prefix holds which space's head.
ROLES = {
    "clap_clip": {"clap": "Head_A", "clip": "Head_B"},
    "ulip_clip": {"clip": "Head_A", "ulip": "Head_B"},
}
# A modality each side projects (released heads have one set of statistics; the modality is only checked).
MODALITY = {
    "clap_clip": {"clap": "audio", "clip": "image"},
    "ulip_clip": {"clip": "text", "ulip": "pointcloud"},
}


def released_state(kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with exactly the released keys; distinct heads, non-trivial BatchNorm buffers."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for head in ("Head_A", "Head_B"):
        for name, n_in, n_out, _relu in LAYOUT[kind]:
            p = f"{head}.{name}"
            state[f"{p}.0.weight"] = torch.randn(n_out, n_in, generator=gen) * 0.05
            state[f"{p}.0.bias"] = torch.randn(n_out, generator=gen) * 0.02
            state[f"{p}.1.weight"] = 0.5 + torch.rand(n_out, generator=gen)
            state[f"{p}.1.bias"] = torch.randn(n_out, generator=gen) * 0.1
            state[f"{p}.1.running_mean"] = torch.randn(n_out, generator=gen) * 0.05
            # log-uniform over [1e-6, 1e-1]: for the small ones eps 1e-5 is a large part of the divisor
            state[f"{p}.1.running_var"] = 10 ** (-6 + 5 * torch.rand(n_out, generator=gen))
            state[f"{p}.1.num_batches_tracked"] = torch.tensor(3080)
    return state


def reference_forward(state: dict[str, torch.Tensor], kind: str, head: str, x: np.ndarray) -> np.ndarray:
    """The published pipeline in float64: normalise, (Linear, eval BatchNorm, [ReLU])..., normalise."""

    def p(key: str) -> np.ndarray:
        return state[f"{head}.{key}"].double().numpy()

    x = np.asarray(x, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    for name, _n_in, _n_out, relu in LAYOUT[kind]:
        x = x @ p(f"{name}.0.weight").T + p(f"{name}.0.bias")
        x = (x - p(f"{name}.1.running_mean")) / np.sqrt(p(f"{name}.1.running_var") + BN_EPS)
        x = x * p(f"{name}.1.weight") + p(f"{name}.1.bias")
        if relu:
            x = np.maximum(x, 0.0)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _inputs(n: int = 16, seed: int = 1) -> np.ndarray:
    """Rows of very different lengths: a head fed un-normalised input would give other outputs."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 512))
    return (x * rng.uniform(0.2, 5.0, size=(n, 1))).astype(np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("kind", ["clap_clip", "ulip_clip"])
def test_released_heads_match_the_published_forward(tmp_path: Path, kind: str) -> None:
    state = released_state(kind)
    path = tmp_path / f"{kind}.pt"
    torch.save(state, path)  # the release stores a bare state dict
    bridge = import_released(path)
    save_bridge(bridge, tmp_path / "converted.safetensors")
    converted = load_bridge(tmp_path / "converted.safetensors")
    x = _inputs()
    for space, head in ROLES[kind].items():
        want = reference_forward(state, kind, head, x)
        other = reference_forward(state, kind, next(h for h in ("Head_A", "Head_B") if h != head), x)
        assert _cosines(want, other).min() < 0.99  # the two heads really differ: a swap would show
        for b in (bridge, converted):
            got = b.project(space, x, modality=MODALITY[kind][space])
            assert got.dtype == np.float32 and got.shape == (len(x), 512)
            np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
            assert _cosines(got, want).min() >= 0.99999


def test_released_av_head_has_no_final_relu(tmp_path: Path) -> None:
    """The audio-image release ends in BatchNorm: projected vectors have negative entries."""
    torch.save(released_state("clap_clip"), tmp_path / "clap_clip.pt")
    out = import_released(tmp_path / "clap_clip.pt").project("clap", _inputs(), modality="audio")
    assert (out < 0).any()
