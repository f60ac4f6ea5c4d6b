"""The Bridge: one projector head per contrastive space, plus the metadata that says what it connects."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avsearch.bridge.calibration import recalibrate
from avsearch.bridge.heads import build_head
from avsearch.bridge.meta import BridgeMeta, HeadSpec
from avsearch.bridge.meta import Side as Side  # re-exported: bridge/meta.py holds it, torch-free
from avsearch.errors import IncompatibleError


class Bridge(nn.Module):
    """Two projector heads keyed by space name. `project` maps native embeddings to the shared space."""

    def __init__(self, meta: BridgeMeta) -> None:
        super().__init__()
        self.meta = meta
        self.heads = nn.ModuleDict(
            {s.space: build_head(HeadSpec(**{**asdict(meta.head), "in_dim": s.dim})) for s in meta.sides}
        )
        self.fingerprint: str = ""  # set by save/load: sha256 of the weights, identifies this bridge

    def forward_space(self, space: str, x: torch.Tensor, kind: str) -> torch.Tensor:
        """Project a batch (B, dim) of one input kind ("overlap" or "memory") of `space`, L2-normalised."""
        self.meta.side(space)
        return F.normalize(self.heads[space](x, kind), dim=-1)

    def recalibrate(self, space: str, modality: str, x: np.ndarray) -> None:
        """Set the BatchNorm statistics that `modality` uses in `space` to those of the embeddings `x`
        (N, dim): inference then normalises such inputs as training normalised each batch by its own
        statistics. Heads with shared (upstream) statistics are left untouched."""
        recalibrate(self.heads[space], x, self.meta.input_kind(space, modality), next(self.parameters()).device)

    @torch.inference_mode()
    def project(self, space: str, x: np.ndarray, *, modality: str, batch_size: int = 65536) -> np.ndarray:
        """Native embeddings (N, dim) of `modality` in `space` -> shared space (N, out_dim), L2-normalised.

        Inputs are L2-normalised first (the heads were trained on unit vectors). Runs in eval mode on
        the device the bridge sits on, with the BatchNorm statistics of the modality's input kind.
        """
        side = self.meta.side(space)
        kind = self.meta.input_kind(space, modality)
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != side.dim:
            raise IncompatibleError(f"{space} embeddings must have shape (N, {side.dim}), got {tuple(x.shape)}")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = np.empty((x.shape[0], self.meta.head.out_dim), dtype=np.float32)
        for start in range(0, x.shape[0], batch_size):
            chunk = torch.tensor(np.asarray(x[start : start + batch_size], np.float32))
            chunk = F.normalize(chunk.to(device), dim=-1)
            out[start : start + chunk.shape[0]] = self.forward_space(space, chunk, kind).float().cpu().numpy()
        self.train(was_training)
        return out
