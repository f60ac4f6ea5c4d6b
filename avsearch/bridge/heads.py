"""Projector heads, chosen by name in the config (an open_clip-style registry of architectures).

- "mlp": the paper's table 6: Linear(in, hidden) BN ReLU Linear(hidden, out) BN ReLU.
- "released_av": the released audio-image head (clap_clip.pt): as "mlp" without the final ReLU.
- "released_3d": the released 3D-image head (ulip_clip.pt): Linear(in, out) BN ReLU.

Module names follow the released checkpoints (net1/net2, net) so their state dicts load strictly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from avsearch.errors import ConfigError


@dataclass(frozen=True)
class HeadSpec:
    kind: str = "mlp"
    in_dim: int = 512
    hidden: int = 1024  # width of the middle layer (two-layer heads only)
    out_dim: int = 512

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class TwoLayerHead(nn.Module):
    """Linear-BN-ReLU then Linear-BN, with an optional final ReLU (table 6 has one, the release not)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, final_relu: bool) -> None:
        super().__init__()
        self.net1 = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.net2 = nn.Sequential(nn.Linear(hidden, out_dim), nn.BatchNorm1d(out_dim))
        self.final_relu = final_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net2(self.net1(x))
        return torch.relu(x) if self.final_relu else x


class OneLayerHead(nn.Module):
    """Linear-BN-ReLU (the released 3D-image head, `MLP_Half`)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


HEAD_KINDS = ("mlp", "released_av", "released_3d")


def build_head(spec: HeadSpec) -> nn.Module:
    """Instantiate the head a spec names; an unknown kind lists the valid ones."""
    if spec.kind == "mlp":
        return TwoLayerHead(spec.in_dim, spec.hidden, spec.out_dim, final_relu=True)
    if spec.kind == "released_av":
        return TwoLayerHead(spec.in_dim, spec.hidden, spec.out_dim, final_relu=False)
    if spec.kind == "released_3d":
        return OneLayerHead(spec.in_dim, spec.out_dim)
    raise ConfigError(f"unknown head kind {spec.kind!r}; valid kinds: {', '.join(HEAD_KINDS)}")
