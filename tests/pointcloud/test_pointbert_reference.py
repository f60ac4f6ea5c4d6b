"""avsearch's ULIP-2 PointBERT against an independent reference forward written here.

The reference is plain tensor arithmetic on the checkpoint's own state dict, following the
published ULIP v1 PointBERT (salesforce/ULIP models/pointbert/{point_encoder,dvae,misc}.py; summarised
in shared/ULIP-LAYOUT.md, section 3a). It uses no avsearch module and no torch.nn layer:

- grouping: farthest-point sampling from a given start point (ULIP draws the start at random; avsearch
  starts from the point farthest from the centroid, so the reference is given that start), kNN by the
  squared-distance expansion, neighbourhoods centred on their centre;
- mini-PointNet per group (1x1 convolutions = per-point linear maps): conv 3->128, eval BatchNorm, ReLU,
  conv 128->256, max over the group; [global, per-point] (global first) -> conv 512->512, BatchNorm,
  ReLU, conv 512->256, max; reduce_dim 256->384;
- position embedding Linear(3,128), exact GELU, Linear(128,384); CLS token and CLS position prepended;
- 12 pre-norm blocks, the position embedding re-added before every block; attention: qkv without bias,
  6 heads of 64, scale 64**-0.5; MLP 384->1536, exact GELU, ->384; LayerNorm eps 1e-5 everywhere;
- final LayerNorm, concat(CLS, max over the group tokens) = 768, @ pc_projection (768x512), and the
  encoder's L2 normalisation.

The checkpoint is written in ULIP's layout ({'state_dict': {'module.<key>': ...}, 'args': ...}) with
random weights: BatchNorm buffers and LayerNorm affines far from their 0/1 defaults, and the weights that
make the group tokens, CLS token and position embeddings small (std 3e-3), so that the first LayerNorm's eps
is a visible part of its divisor. The comparison also checks elements (atol 1e-5 on unit vectors; the
measured difference is about 1e-7), which catches what a cosine of 0.9999 would let through.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avsearch.encoders import pointbert
from avsearch.encoders.ulip import load_ulip_encoder
from tests.pointcloud.conftest import random_ulip_state, save_ulip_checkpoint

NUM_GROUP, GROUP_SIZE, DEPTH, HEADS, WIDTH = 512, 32, 12, 6, 384
LN_EPS = BN_EPS = 1e-5
SMALL = {"point_encoder.reduce_dim.weight", "point_encoder.pos_embed.2.weight", "point_encoder.cls_token"}


# --- the checkpoint ------------------------------------------------------------------------------
def _point_tower_weights(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Fresh random values for every point-tower entry (same names and shapes as in the file)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if not (key.startswith("point_encoder.") or key == "pc_projection"):
            continue
        shape = tuple(value.shape)
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(1000)
        elif key.endswith("running_mean"):
            out[key] = 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith("running_var"):
            out[key] = 10 ** (-3 + 2 * torch.rand(shape, generator=gen))  # 1e-3 .. 1e-1
        elif len(shape) == 1 and (".norm" in key or "conv.1." in key):
            # LayerNorm / BatchNorm affine: weight around 1, bias around 0, neither trivial
            base = 1.0 if key.endswith("weight") else 0.0
            out[key] = base + 0.2 * torch.randn(shape, generator=gen)
        elif key == "pc_projection":
            out[key] = torch.randn(shape, generator=gen) / math.sqrt(shape[0])
        elif key.endswith("weight") and len(shape) >= 2:
            fan_in = shape[1] * (shape[2] if len(shape) == 3 else 1)
            scale = 3e-3 if key in SMALL else 1.0 / math.sqrt(fan_in)
            out[key] = scale * torch.randn(shape, generator=gen)
        else:  # biases, cls_pos, cls_token
            scale = 3e-3 if key in SMALL or key.endswith(("reduce_dim.bias", "pos_embed.2.bias", "cls_pos")) else 0.05
            out[key] = scale * torch.randn(shape, generator=gen)
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = random_ulip_state(seed=5)
    state |= _point_tower_weights(state, seed=5)
    return save_ulip_checkpoint(state, tmp_path_factory.mktemp("ulip_ref"))


@pytest.fixture(scope="module")
def encoder(checkpoint: Path):
    return load_ulip_encoder(("pointcloud",), checkpoint.parent, "cpu")


def read_point_tower(path: Path) -> dict[str, torch.Tensor]:
    """The file's point-tower entries, read as ULIP's loader reads them ('module.' stripped)."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {
        k.removeprefix("module."): v for k, v in state.items() if k.startswith(("module.point_encoder.", "module.pc_"))
    }


# --- the reference -------------------------------------------------------------------------------
def reference_groups(xyz: torch.Tensor, start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FPS from `start` (B,) then kNN: (centre indices (B, G), neighbour indices (B, G, K), centres)."""
    b, n, _ = xyz.shape
    chosen = torch.zeros(b, NUM_GROUP, dtype=torch.long)
    nearest = torch.full((b, n), 1e10, dtype=xyz.dtype)
    current = start.clone()
    for i in range(NUM_GROUP):
        chosen[:, i] = current
        d = ((xyz - xyz[torch.arange(b), current][:, None, :]) ** 2).sum(-1)
        nearest = torch.where(d < nearest, d, nearest)
        current = nearest.max(-1)[1]
    centres = torch.stack([xyz[i, chosen[i]] for i in range(b)])
    sq = -2 * centres @ xyz.transpose(1, 2) + (centres**2).sum(-1)[..., None] + (xyz**2).sum(-1)[:, None, :]
    neighbours = sq.topk(GROUP_SIZE, dim=-1, largest=False, sorted=False)[1]
    return chosen, neighbours, centres


def reference_embedding(w: dict[str, torch.Tensor], neighbourhood: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """ULIP-2 PointBERT encode_pc on given groups, then L2 normalisation: (B, 512)."""
    pe = "point_encoder."

    def lin(x, name, bias=True):
        weight = w[name + ".weight"]
        weight = weight[..., 0] if weight.ndim == 3 else weight  # a 1x1 Conv1d is a per-point linear map
        return x @ weight.T + (w[name + ".bias"] if bias else 0)

    def bn(x, name):
        return (x - w[name + ".running_mean"]) / torch.sqrt(w[name + ".running_var"] + BN_EPS) * w[
            name + ".weight"
        ] + w[name + ".bias"]

    def ln(x, name):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + LN_EPS) * w[name + ".weight"] + w[name + ".bias"]

    def gelu(x):
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))

    relu = torch.relu
    # mini-PointNet over each group, channels last: (B, G, K, C)
    f = lin(
        relu(bn(lin(neighbourhood, pe + "encoder.first_conv.0"), pe + "encoder.first_conv.1")),
        pe + "encoder.first_conv.3",
    )
    f = torch.cat([f.max(dim=2, keepdim=True)[0].expand_as(f), f], dim=-1)
    f = lin(relu(bn(lin(f, pe + "encoder.second_conv.0"), pe + "encoder.second_conv.1")), pe + "encoder.second_conv.3")
    tokens = lin(f.max(dim=2)[0], pe + "reduce_dim")
    pos = lin(gelu(lin(centres, pe + "pos_embed.0")), pe + "pos_embed.2")
    b = tokens.shape[0]
    x = torch.cat([w[pe + "cls_token"].expand(b, 1, WIDTH), tokens], dim=1)
    pos = torch.cat([w[pe + "cls_pos"].expand(b, 1, WIDTH), pos], dim=1)
    hd = WIDTH // HEADS
    for i in range(DEPTH):
        p = f"{pe}blocks.blocks.{i}."
        x = x + pos
        q, k, v = lin(ln(x, p + "norm1"), p + "attn.qkv", bias=False).split(WIDTH, dim=-1)
        q, k, v = (t.reshape(b, -1, HEADS, hd).transpose(1, 2) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) * hd**-0.5, dim=-1)
        x = x + lin((att @ v).transpose(1, 2).reshape(b, -1, WIDTH), p + "attn.proj")
        x = x + lin(gelu(lin(ln(x, p + "norm2"), p + "mlp.fc1")), p + "mlp.fc2")
    x = ln(x, pe + "norm")
    emb = torch.cat([x[:, 0], x[:, 1:].max(dim=1)[0]], dim=-1) @ w["pc_projection"]
    return emb / emb.norm(dim=-1, keepdim=True)


# --- the tests -----------------------------------------------------------------------------------
def _clouds(n_points: int = 1024, seed: int = 0) -> np.ndarray:
    """Two different shapes (a noisy ellipsoid surface, a thin plate), centred and scaled to the unit
    sphere as avsearch's reader does: (2, n_points, 3) float32."""
    rng = np.random.default_rng(seed)
    shell = rng.normal(size=(n_points, 3))
    shell = shell / np.linalg.norm(shell, axis=1, keepdims=True) * rng.uniform(0.3, 1.0, size=3)
    shell += rng.normal(scale=0.02, size=shell.shape)
    plate = rng.uniform(-1, 1, size=(n_points, 3)) * [1.0, 0.6, 0.05]
    clouds = np.stack([shell, plate])
    clouds -= clouds.mean(axis=1, keepdims=True)
    return (clouds / np.linalg.norm(clouds, axis=2).max(axis=1)[:, None, None]).astype(np.float32)


def _avsearch_start(xyz: torch.Tensor) -> torch.Tensor:
    """avsearch's documented FPS start: the point farthest from the centroid."""
    return ((xyz - xyz.mean(dim=1, keepdim=True)) ** 2).sum(-1).argmax(-1)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_same_groups_same_embedding(encoder, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both forwards fed the same centres and neighbourhoods: cosine >= 0.9999."""
    clouds = _clouds()
    xyz = torch.from_numpy(clouds)
    _, nbr, centres = reference_groups(xyz, _avsearch_start(xyz))
    neighbourhood = torch.stack([xyz[i, nbr[i]] for i in range(len(xyz))]) - centres[:, :, None, :]
    want = reference_embedding(read_point_tower(checkpoint), neighbourhood, centres).numpy()

    def given_groups(pts, num_group, group_size):
        assert (num_group, group_size) == (NUM_GROUP, GROUP_SIZE)
        return neighbourhood.to(pts.dtype), centres.to(pts.dtype)

    monkeypatch.setattr(pointbert, "group_points", given_groups)
    got = encoder.encode_points(clouds)
    assert _cosines(got, want).min() >= 0.9999
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_grouping_matches_the_published_algorithm() -> None:
    """avsearch's own grouping gives the published FPS centres (in order) and kNN neighbourhoods."""
    xyz = torch.from_numpy(_clouds(seed=1))
    _, nbr, centres = reference_groups(xyz, _avsearch_start(xyz))
    groups, got_centres = pointbert.group_points(xyz, NUM_GROUP, GROUP_SIZE)
    torch.testing.assert_close(got_centres, centres, rtol=0, atol=0)
    want = torch.stack([xyz[i, nbr[i]] for i in range(len(xyz))]) - centres[:, :, None, :]
    # Neighbour order is free (the encoder max-pools over it): compare each group as a sorted set.
    key = torch.tensor([0.3711, 0.5197, 0.7703])

    def ordered(g: torch.Tensor) -> torch.Tensor:
        return g.gather(2, (g @ key).argsort(dim=2)[..., None].expand_as(g))

    torch.testing.assert_close(ordered(groups), ordered(want), rtol=0, atol=1e-7)
