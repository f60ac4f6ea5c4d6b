"""The numpy projection a query uses (bridge/fast.py) computes what the torch Bridge computes: same
fingerprint, same vectors (float32 rounding apart), for every head kind and both BatchNorm statistics
layouts, from a .safetensors bridge file and from a released .pt checkpoint (through its cached
conversion, which needs torch once)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avsearch.bridge.fast import NumpyBridge, open_fast_bridge
from avsearch.bridge.heads import HeadSpec
from avsearch.bridge.io import import_released, load_bridge, save_bridge
from avsearch.bridge.model import Bridge, BridgeMeta, Side
from tests.weights_factory import make_released_bridges

SIDES = (Side("clip", "clip-vit-b-32-openai", 512, "image"), Side("clap", "clap-630k-fusion", 512, "audio"))


def _bridge(kind: str, norm_stats: str, seed: int) -> Bridge:
    torch.manual_seed(seed)
    head = HeadSpec(kind=kind, in_dim=512, hidden=256, out_dim=128, norm_stats=norm_stats)
    bridge = Bridge(BridgeMeta("audio_visual", "text", SIDES, head))
    with torch.no_grad():  # statistics away from 0/1, different per kind, so that a mix-up shows
        for name, buf in bridge.named_buffers():
            if "running_mean" in name:
                buf.copy_(torch.randn_like(buf) * 0.05)
            elif "running_var" in name:
                buf.copy_(torch.rand_like(buf) * 0.02 + 0.001)
        for name, p in bridge.named_parameters():
            if name.endswith(".1.weight") or name.endswith(".1.bias"):
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
    return bridge.eval()


def _same(fast: NumpyBridge, ref: Bridge, rng: np.random.Generator) -> None:
    assert fast.fingerprint == ref.fingerprint
    for space, modality in (("clip", "image"), ("clip", "text"), ("clap", "audio"), ("clap", "text")):
        x = rng.standard_normal((7, 512)).astype(np.float32) * 3
        want = ref.project(space, x, modality=modality)
        got = fast.project(space, x, modality=modality)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=2e-6)


KINDS = [("mlp", "per_kind"), ("mlp", "shared"), ("released_av", "shared"), ("released_3d", "shared")]


@pytest.mark.parametrize(("kind", "norm_stats"), KINDS)
def test_numpy_projection_equals_torch(tmp_path: Path, kind: str, norm_stats: str) -> None:
    path = tmp_path / "b.safetensors"
    save_bridge(_bridge(kind, norm_stats, seed=len(kind)), path)
    _same(open_fast_bridge(path), load_bridge(path), np.random.default_rng(0))


def test_released_checkpoint_through_its_cached_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "cache"))
    folder = make_released_bridges(tmp_path / "w")
    for name in ("clap_clip.pt", "ulip_clip.pt"):
        ref = import_released(folder / name)
        first = open_fast_bridge(folder / name)  # converts (torch) and caches
        cached = list((tmp_path / "cache" / "bridges").glob(f"{Path(name).stem}-*.safetensors"))
        assert len(cached) == 1
        rng = np.random.default_rng(1)
        for space in ref.meta.spaces:
            side = ref.meta.side(space)
            x = rng.standard_normal((5, 512)).astype(np.float32)
            want = ref.project(space, x, modality=side.memory)
            np.testing.assert_allclose(first.project(space, x, modality=side.memory), want, atol=2e-6)
            again = open_fast_bridge(folder / name)  # from the cache
            np.testing.assert_allclose(again.project(space, x, modality=side.memory), want, atol=2e-6)
        assert first.fingerprint == ref.fingerprint


def test_a_cached_released_bridge_opens_without_torch(tmp_path: Path) -> None:
    folder = make_released_bridges(tmp_path / "w")
    env = {"AVSEARCH_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    code = (
        "import sys, numpy as np\n"
        "from avsearch.bridge.fast import open_fast_bridge\n"
        f"b = open_fast_bridge({str(folder / 'clap_clip.pt')!r})\n"
        "print(b.fingerprint, 'torch' in sys.modules)\n"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    fp = import_released(folder / "clap_clip.pt").fingerprint
    assert first.stdout.split() == [fp, "True"]  # the first open converts with torch
    assert second.stdout.split() == [fp, "False"]  # later ones read the cache only
