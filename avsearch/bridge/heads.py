"""Projector heads, chosen by name in the config (an open_clip-style registry of architectures).

- "mlp": the paper's table 6: Linear(in, hidden) BN ReLU Linear(hidden, out) BN ReLU.
- "released_av": the released audio-image head (clap_clip.pt): as "mlp" without the final ReLU.
- "released_3d": the released 3D-image head (ulip_clip.pt): Linear(in, out) BN ReLU.

Module names follow the released checkpoints (net1/net2, net) so their state dicts load strictly.

BatchNorm statistics (`norm_stats`): in training every batch holds one kind of input (the overlap
modality, e.g. captions, or pseudo embeddings of a memory modality, e.g. images) and is normalised
with its own batch statistics. "per_kind" keeps one set of running statistics per kind, so inference
normalises an image with image-kind statistics, exactly as training did; "shared" is plain BatchNorm
(one blend of both kinds), kept for the released checkpoints, whose statistics are upstream's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avsearch.bridge.meta import HeadSpec as HeadSpec  # re-exported: bridge/meta.py holds it, torch-free
from avsearch.errors import ConfigError

INPUT_KINDS = ("overlap", "memory")  # what a batch holds: the shared modality, or a memory modality
NORM_STATS = ("per_kind", "shared")


class PerKindBatchNorm1d(nn.Module):
    """BatchNorm1d with one affine transform and one set of running statistics per input kind.

    Training normalises with the batch's statistics and updates the running statistics of the batch's
    kind only; evaluation uses that kind's running statistics.
    """

    def __init__(self, features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))
        for kind in INPUT_KINDS:
            self.register_buffer(f"running_mean_{kind}", torch.zeros(features))
            self.register_buffer(f"running_var_{kind}", torch.ones(features))
            self.register_buffer(f"num_batches_tracked_{kind}", torch.tensor(0, dtype=torch.long))

    def stats(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Running (mean, var) of `kind`."""
        if kind not in INPUT_KINDS:
            raise ValueError(f"unknown input kind {kind!r}; valid: {', '.join(INPUT_KINDS)}")
        return getattr(self, f"running_mean_{kind}"), getattr(self, f"running_var_{kind}")

    def forward(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        mean, var = self.stats(kind)
        if self.training:
            getattr(self, f"num_batches_tracked_{kind}").add_(1)
        return F.batch_norm(x, mean, var, self.weight, self.bias, self.training, self.momentum, self.eps)


def _norm(features: int, norm_stats: str) -> nn.Module:
    return PerKindBatchNorm1d(features) if norm_stats == "per_kind" else nn.BatchNorm1d(features)


def _run(block: nn.Sequential, x: torch.Tensor, kind: str) -> torch.Tensor:
    """A Sequential whose per-kind BatchNorm layers also receive the input kind."""
    for layer in block:
        x = layer(x, kind) if isinstance(layer, PerKindBatchNorm1d) else layer(x)
    return x


class TwoLayerHead(nn.Module):
    """Linear-BN-ReLU then Linear-BN, with an optional final ReLU (table 6 has one, the release not)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, final_relu: bool, norm_stats: str) -> None:
        super().__init__()
        self.net1 = nn.Sequential(nn.Linear(in_dim, hidden), _norm(hidden, norm_stats), nn.ReLU())
        self.net2 = nn.Sequential(nn.Linear(hidden, out_dim), _norm(out_dim, norm_stats))
        self.final_relu = final_relu

    def forward(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        x = _run(self.net2, _run(self.net1, x, kind), kind)
        return torch.relu(x) if self.final_relu else x


class OneLayerHead(nn.Module):
    """Linear-BN-ReLU (the released 3D-image head, `MLP_Half`)."""

    def __init__(self, in_dim: int, out_dim: int, norm_stats: str) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), _norm(out_dim, norm_stats), nn.ReLU())

    def forward(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        return _run(self.net, x, kind)


HEAD_KINDS = ("mlp", "released_av", "released_3d")


def build_head(spec: HeadSpec) -> nn.Module:
    """Instantiate the head a spec names; an unknown kind lists the valid ones."""
    if spec.norm_stats not in NORM_STATS:
        raise ConfigError(f"unknown head norm_stats {spec.norm_stats!r}; valid: {', '.join(NORM_STATS)}")
    if spec.kind == "mlp":
        return TwoLayerHead(spec.in_dim, spec.hidden, spec.out_dim, final_relu=True, norm_stats=spec.norm_stats)
    if spec.kind == "released_av":
        return TwoLayerHead(spec.in_dim, spec.hidden, spec.out_dim, final_relu=False, norm_stats=spec.norm_stats)
    if spec.kind == "released_3d":
        return OneLayerHead(spec.in_dim, spec.out_dim, norm_stats=spec.norm_stats)
    raise ConfigError(f"unknown head kind {spec.kind!r}; valid kinds: {', '.join(HEAD_KINDS)}")


def norm_layers(head: nn.Module) -> list[PerKindBatchNorm1d]:
    """The per-kind BatchNorm layers of a head, input side first (empty for shared statistics)."""
    return [m for m in head.modules() if isinstance(m, PerKindBatchNorm1d)]
