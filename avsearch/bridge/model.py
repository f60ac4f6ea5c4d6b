"""The Bridge: one projector head per contrastive space, plus the metadata that says what it connects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avsearch.bridge.calibration import recalibrate
from avsearch.bridge.confidence import Calibration, pair_key
from avsearch.bridge.heads import HeadSpec, build_head
from avsearch.errors import IncompatibleError, InputError


@dataclass(frozen=True)
class Side:
    """One of the two connected spaces."""

    space: str  # "clip", "clap", "ulip"
    encoder: str  # encoder registry name whose embeddings this side expects
    dim: int  # native embedding width
    memory: str  # the non-overlap modality of this space ("image" for clip in the AV bridge)


@dataclass
class BridgeMeta:
    """Everything about a bridge except its weights; stored as JSON beside the safetensors."""

    name: str
    overlap: str  # modality both spaces share ("text" for clip+clap, "image" for clip+ulip)
    sides: tuple[Side, Side]
    head: HeadSpec
    hyper: dict[str, Any] = field(default_factory=dict)  # training hyper-parameters (empty if imported)
    data_fingerprint: str | None = None  # sha256 over the training arrays
    metrics: dict[str, Any] = field(default_factory=dict)  # final losses, training time
    source: str = "trained"  # "trained" or "imported:<file name>"
    package_version: str = ""
    # Score calibrations by modality pair ("audio|image": bridge/confidence.py Calibration.to_dict()).
    calibrations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def calibration(self, a: str, b: str) -> Calibration | None:
        """The score calibration of modality pair (a, b), or None when the bridge holds none."""
        stored = self.calibrations.get(pair_key(a, b))
        return Calibration.from_dict(stored) if stored else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sides"] = [asdict(s) for s in self.sides]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BridgeMeta:
        sides = tuple(Side(**s) for s in d["sides"])
        if len(sides) != 2:
            raise InputError(f"a bridge connects exactly two spaces, metadata lists {len(sides)}")
        return cls(
            name=d["name"],
            overlap=d["overlap"],
            sides=sides,  # type: ignore[arg-type]
            # Bridge files written before per-kind statistics existed hold plain BatchNorm layers.
            head=HeadSpec(**({"norm_stats": "shared"} | d["head"])),
            hyper=dict(d.get("hyper", {})),
            data_fingerprint=d.get("data_fingerprint"),
            metrics=dict(d.get("metrics", {})),
            source=d.get("source", "trained"),
            package_version=d.get("package_version", ""),
            calibrations=dict(d.get("calibrations", {})),
        )

    @property
    def spaces(self) -> tuple[str, str]:
        return (self.sides[0].space, self.sides[1].space)

    def side(self, space: str) -> Side:
        for s in self.sides:
            if s.space == space:
                return s
        raise IncompatibleError(f"bridge {self.name!r} connects {' and '.join(self.spaces)}, not {space!r}")

    def input_kind(self, space: str, modality: str) -> str:
        """Which kind of training batch ("overlap" or "memory") `modality` in `space` corresponds to."""
        side = self.side(space)
        if modality == self.overlap:
            return "overlap"
        if modality == side.memory:
            return "memory"
        raise IncompatibleError(
            f"bridge {self.name!r} projects {self.overlap} or {side.memory} through its {space} side, not {modality!r}"
        )


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
