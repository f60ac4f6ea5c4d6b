"""BatchNorm calibration: the running statistics of one input kind set to a population's statistics.

Training normalises every batch with its own statistics, and a pseudo embedding (a softmax-weighted mean
of memory rows, eq. 2) is smoother than a real image or sound, so the statistics of the pseudo batches
are not those of the media a bridge projects at inference. After training, each kind's statistics are
recomputed over real inputs of that kind (the memories for media, the overlap rows for the overlap
modality), so inference normalises a photo as training normalised each batch: by its own population.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avsearch.bridge.heads import norm_layers

CHUNK = 65536  # rows per forward pass: bounded memory for memories of millions of rows


@torch.no_grad()
def recalibrate(head: nn.Module, x: np.ndarray, kind: str, device: torch.device, chunk: int = CHUNK) -> None:
    """Set `kind`'s running statistics of every per-kind BatchNorm layer of `head` to the population
    statistics of the inputs x (N, in_dim; L2-normalised here, as in projection), layer by layer: each
    layer is measured with its predecessors already calibrated, so eval mode then normalises these
    inputs exactly as one batch holding all of them would be normalised in training mode."""
    was_training = head.training
    head.eval()
    for layer in norm_layers(head):
        sums = torch.zeros((2, layer.weight.shape[0]), dtype=torch.float64, device=device)  # sum, sum of squares

        def accumulate(_module: nn.Module, args: tuple[torch.Tensor, str], sums: torch.Tensor = sums) -> None:
            h = args[0].double()
            sums[0] += h.sum(dim=0)
            sums[1] += (h * h).sum(dim=0)

        handle = layer.register_forward_pre_hook(accumulate)
        try:
            for start in range(0, x.shape[0], chunk):
                rows = torch.tensor(np.asarray(x[start : start + chunk], np.float32), device=device)
                head(F.normalize(rows, dim=-1), kind)
        finally:
            handle.remove()
        n = x.shape[0]
        mean = sums[0] / n
        var = (sums[1] / n - mean * mean).clamp_min(0) * (n / max(n - 1, 1))  # unbiased, as BatchNorm keeps
        running_mean, running_var = layer.stats(kind)
        running_mean.copy_(mean.to(running_mean.dtype))
        running_var.copy_(var.to(running_var.dtype))
    head.train(was_training)
