"""ULIP-2's Point-BERT xyz encoder (PointTransformer + pc_projection), written for avsearch.

Module and parameter names follow ULIP v1's `ULIP_PointBERT` so that the `point_encoder.*` and
`pc_projection` entries of `pointbert_ULIP-2.pt` load strictly (see shared/ULIP-LAYOUT.md, sections 2d
and 3a). Forward: 512 groups of 32 points (farthest-point sampling + kNN) -> mini-PointNet per group ->
12 pre-norm transformer blocks (position embedding re-added before every block) -> concat(CLS, max over
groups) = 768 -> @ pc_projection -> 512 (not normalised here; the encoder adapter normalises).

Determinism: ULIP's farthest-point sampling starts from a random point (global RNG). Here it starts from
the point farthest from the cloud's centroid (the lowest index on ties), so the same cloud always gives
the same groups and the same embedding, whatever the RNG state, and the start does not depend on the
order in which a file lists its points.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PointBertConfig:
    """Architecture of ULIP-2 PointBERT (ULIP's PointTransformer_8192point.yaml)."""

    trans_dim: int = 384  # transformer width
    depth: int = 12
    num_heads: int = 6
    num_group: int = 512  # farthest-point-sampled group centres
    group_size: int = 32  # kNN neighbours per centre (the centre itself included)
    encoder_dims: int = 256  # mini-PointNet output width
    mlp_ratio: float = 4.0
    embed_dim: int = 512  # pc_projection output (the ULIP space)


def farthest_point_sample(xyz: torch.Tensor, n: int) -> torch.Tensor:
    """Deterministic farthest-point sampling. xyz (B, N, 3) -> indices (B, n) int64.

    Starts from the point farthest from each cloud's centroid, then repeatedly takes the point farthest
    from the chosen set (argmax returns the first maximum, so ties resolve to the lowest index).
    """
    b, num, _ = xyz.shape
    if n > num:
        raise ValueError(f"cannot sample {n} points from a cloud of {num}")
    rows = torch.arange(b, device=xyz.device)
    centroid = xyz.mean(dim=1, keepdim=True)
    farthest = ((xyz - centroid) ** 2).sum(-1).argmax(-1)
    min_dist = torch.full((b, num), float("inf"), device=xyz.device, dtype=xyz.dtype)
    idx = torch.empty((b, n), dtype=torch.long, device=xyz.device)
    for i in range(n):
        idx[:, i] = farthest
        chosen = xyz[rows, farthest].unsqueeze(1)  # (B, 1, 3)
        min_dist = torch.minimum(min_dist, ((xyz - chosen) ** 2).sum(-1))
        farthest = min_dist.argmax(-1)
    return idx


def knn_indices(k: int, xyz: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Indices of the k nearest points of xyz (B, N, 3) to each centre (B, G, 3) -> (B, G, k)."""
    # Same squared-distance expansion as Point-BERT's knn_point, so neighbourhoods match the reference.
    dist = -2.0 * centres @ xyz.transpose(1, 2)
    dist = dist + (centres**2).sum(-1, keepdim=True) + (xyz**2).sum(-1).unsqueeze(1)
    return dist.topk(k, dim=-1, largest=False, sorted=True).indices


def group_points(xyz: torch.Tensor, num_group: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """xyz (B, N, 3) -> (neighbourhoods (B, G, K, 3) centred on their centre, centres (B, G, 3))."""
    b = xyz.shape[0]
    rows = torch.arange(b, device=xyz.device).unsqueeze(1)
    centres = xyz[rows, farthest_point_sample(xyz, num_group)]
    nbr = knn_indices(group_size, xyz, centres)  # (B, G, K)
    neighbourhood = xyz[rows.unsqueeze(2), nbr]  # (B, G, K, 3)
    return neighbourhood - centres.unsqueeze(2), centres


class GroupEncoder(nn.Module):
    """Mini-PointNet over each group: (B, G, K, 3) -> (B, G, encoder_dims)."""

    def __init__(self, encoder_dims: int) -> None:
        super().__init__()
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Conv1d(128, 256, 1)
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(512, 512, 1),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Conv1d(512, encoder_dims, 1),
        )
        self.encoder_dims = encoder_dims

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        b, g, k, _ = groups.shape
        x = self.first_conv(groups.reshape(b * g, k, 3).transpose(2, 1))  # (BG, 256, K)
        glob = x.max(dim=2, keepdim=True).values
        # Global feature first: second_conv's input channels 0-255 are global, 256-511 per point.
        x = self.second_conv(torch.cat([glob.expand(-1, -1, k), x], dim=1))
        return x.max(dim=2).values.reshape(b, g, self.encoder_dims)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact erf GELU, as in Point-BERT
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention, qkv without bias, scale head_dim**-0.5 (Point-BERT's defaults)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # default scale = head_dim**-0.5
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block; drop-path of the reference is identity at inference and omitted."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.attn = Attention(dim, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerEncoder(nn.Module):
    def __init__(self, cfg: PointBertConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg.trans_dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x + pos)  # the position embedding is re-added before every block
        return x


class PointTransformer(nn.Module):
    """Point-BERT backbone: points (B, N, 3) -> concat(CLS, max over groups) (B, 2 * trans_dim)."""

    def __init__(self, cfg: PointBertConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.trans_dim))
        self.cls_pos = nn.Parameter(torch.randn(1, 1, cfg.trans_dim))
        self.encoder = GroupEncoder(cfg.encoder_dims)
        self.reduce_dim = nn.Linear(cfg.encoder_dims, cfg.trans_dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, cfg.trans_dim))
        self.blocks = TransformerEncoder(cfg)
        self.norm = nn.LayerNorm(cfg.trans_dim)

    def forward(self, pts: torch.Tensor) -> torch.Tensor:
        groups, centres = group_points(pts, self.cfg.num_group, self.cfg.group_size)
        tokens = self.reduce_dim(self.encoder(groups))  # (B, G, trans_dim)
        b = tokens.shape[0]
        x = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
        pos = torch.cat([self.cls_pos.expand(b, -1, -1), self.pos_embed(centres)], dim=1)
        x = self.norm(self.blocks(x, pos))
        return torch.cat([x[:, 0], x[:, 1:].max(dim=1).values], dim=-1)


class PointBertEncoder(nn.Module):
    """`point_encoder` + `pc_projection` of ULIP-2: points (B, N, 3), N >= 512 -> (B, 512), unnormalised."""

    def __init__(self, cfg: PointBertConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or PointBertConfig()
        self.point_encoder = PointTransformer(self.cfg)
        self.pc_projection = nn.Parameter(
            torch.randn(2 * self.cfg.trans_dim, self.cfg.embed_dim) * (2 * self.cfg.trans_dim) ** -0.5
        )

    def forward(self, pts: torch.Tensor) -> torch.Tensor:
        if pts.ndim != 3 or pts.shape[-1] != 3:
            raise ValueError(f"points must have shape (B, N, 3), got {tuple(pts.shape)}")
        if pts.shape[1] < self.cfg.num_group:
            raise ValueError(f"PointBERT needs at least {self.cfg.num_group} points, got {pts.shape[1]}")
        return self.point_encoder(pts) @ self.pc_projection
