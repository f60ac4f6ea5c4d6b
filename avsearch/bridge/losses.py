"""The C-MCR objective: semantic completion (eq. 3), inter-MCR InfoNCE (eq. 5-7), intra-MCR (eq. 9)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def semantic_completion(
    x: torch.Tensor,
    noise_var: float,
    *,
    noise: bool,
    renorm: bool,
    generator: torch.Generator | None,
    draw: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 3: add fresh zero-mean gaussian noise of variance noise_var, then re-normalise (x: (B, d)).

    `draw`: a standard-normal tensor shaped like x to scale and add instead of a fresh one (a fixed
    draw lets a test recompute a training step exactly).
    """
    if noise:
        if draw is None:
            draw = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = x + draw * noise_var**0.5
    return F.normalize(x, dim=-1) if renorm else x


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE (eq. 1/5/6) between row-paired, L2-normalised batches a, b of shape (B, d)."""
    logits = a @ b.T / tau
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def intra_alignment(overlap: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
    """One side's term of eq. 9: mean L2 distance between projected overlap and pseudo embeddings."""
    return (overlap - pseudo).norm(dim=-1).mean()
