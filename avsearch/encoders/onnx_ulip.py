"""ULIP-2's point-cloud tower (PointBERT + pc_projection) on ONNX Runtime (one family of
encoders/onnx_towers.py).

Query side (no torch): the cloud read and resampled by media/pointcloud.py, grouped by farthest-point
sampling and kNN in numpy (encoders/pointbert_inputs.py, equal to pointbert.py's torch functions), then
the exported graph: mini-PointNet over the groups, the 12 transformer blocks and the projection, one cloud
a run (the group reshapes fix the batch the graph was traced with).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.encoders.onnx_parts import FINGERPRINT, Export
from avsearch.encoders.onnx_session import normalized, run, session
from avsearch.errors import IncompatibleError, InputError
from avsearch.modalities import POINTCLOUD

TOWERS = (POINTCLOUD,)
GROUPS = "groups.json"  # beside the graph: PointBERT's group count and size, which the numpy grouping uses


def key(spec: Any, weights_dir: Path | str | None) -> str:
    """A name for the export made without loading the model or hashing the whole checkpoint (the
    encoder's own fingerprint does; the export keeps it beside the graph): the file's identity."""
    from avsearch import __version__
    from avsearch.encoders.identity import fingerprint
    from avsearch.encoders.weights import find_file, resolve_weight

    paths = [resolve_weight(find_file(k).name, weights_dir) for k in spec.files]
    return fingerprint(spec.name, paths, {"avsearch": __version__})


def supports(spec: Any, tower: str) -> bool:
    return tower == POINTCLOUD


def load(spec: Any, tower: str, weights_dir: Path | str | None, folder: Path) -> Any:
    if not (folder / GROUPS).is_file():
        return None
    return OnnxUlipEncoder(spec, (folder / FINGERPRINT).read_text().strip(), folder)


class OnnxUlipEncoder:
    """ULIP-2's point-cloud tower on ONNX Runtime: UlipEncoder.encode_files / encode_points' vectors."""

    runtime = "onnx"

    def __init__(self, spec: Any, fingerprint: str, folder: Path) -> None:
        self.name, self.space, self.dim = spec.name, spec.space, spec.dim
        self.modalities = (POINTCLOUD,)
        self._fingerprint = fingerprint
        self.graph = folder / "model.onnx"
        self._model = None
        self._run = session(self.graph)
        groups = json.loads((folder / GROUPS).read_text())
        self.num_group, self.group_size = int(groups["num_group"]), int(groups["group_size"])

    def fingerprint(self) -> str:
        return self._fingerprint

    def _require(self, modality: str) -> None:
        if modality != POINTCLOUD:
            raise IncompatibleError(f"encoder {self.name!r} was loaded without the {modality} tower")

    def encode_points(self, points: np.ndarray) -> np.ndarray:
        """Prepared clouds (B, N, 3), N >= 512 -> (B, 512) float32, unit rows."""
        from avsearch.encoders.pointbert_inputs import group_points

        points = np.asarray(points, dtype=np.float32)
        if points.ndim != 3 or points.shape[2] != 3:
            raise InputError(f"point clouds must have shape (B, N, 3), got {points.shape}")
        if not len(points):
            return np.zeros((0, self.dim), np.float32)
        return normalized(run(self._run, group_points(points, self.num_group, self.group_size)))

    def prepare(self, modality: str, path: Path) -> np.ndarray:
        from avsearch.media.pointcloud import load_pointcloud

        self._require(modality)
        return load_pointcloud(path)

    def encode_prepared(self, modality: str, items: Sequence[np.ndarray]) -> np.ndarray:
        self._require(modality)
        return self.encode_points(np.stack(items)) if len(items) else np.zeros((0, self.dim), np.float32)

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        self._require(modality)
        return self.encode_prepared(modality, [self.prepare(modality, Path(p)) for p in paths])

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        raise IncompatibleError(f"encoder {self.name!r} does not encode text")


# -- export side (torch is loaded) ------------------------------------------------------------------------


def sample_clouds() -> np.ndarray:
    """Fixed prepared clouds (2, 8192, 3) for the export and its check: a box's surface (many nearly
    equal coordinates) and a small cloud padded with repeats (exact duplicate points)."""
    from avsearch.media.pointcloud import prepare_points

    rng = np.random.default_rng(0)
    half = np.array([1.0, 0.5, 0.25])
    box = rng.uniform(-1, 1, (9000, 3)) * half
    rows, axis = np.arange(len(box)), rng.integers(0, 3, len(box))
    box[rows, axis] = np.sign(box[rows, axis]) * half[axis]  # each point pushed onto a face
    small = rng.normal(size=(700, 3)) * [0.2, 1.0, 0.5]
    return np.stack([prepare_points(c) for c in (box, small)])


def exports(encoder: Any, tower: str) -> list[Export]:
    """PointBertEncoder.forward after its grouping: (neighbourhoods, centres) -> the projected vector."""
    import torch

    from avsearch.encoders.pointbert_inputs import group_points

    tower_module = encoder.point_tower
    cfg = tower_module.cfg

    class Points(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pt, self.projection = tower_module.point_encoder, tower_module.pc_projection

        def forward(self, neighbourhood: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
            # PointTransformer.forward from its tokens on, its groups given
            pt = self.pt
            tokens = pt.reduce_dim(pt.encoder(neighbourhood))
            b = tokens.shape[0]
            x = torch.cat([pt.cls_token.expand(b, -1, -1), tokens], dim=1)
            pos = torch.cat([pt.cls_pos.expand(b, -1, -1), pt.pos_embed(centres)], dim=1)
            x = pt.norm(pt.blocks(x, pos))
            return torch.cat([x[:, 0], x[:, 1:].max(dim=1).values], dim=-1) @ self.projection

    def feed(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return group_points(points, cfg.num_group, cfg.group_size)

    return [Export("model.onnx", Points().eval(), ("neighbourhood", "centres"), sample_clouds(), feed, batch=False)]


def torch_forward(encoder: Any, tower: str, inputs: np.ndarray) -> np.ndarray:
    """The torch encoder's vectors for the same clouds, its own (torch) grouping included."""
    return encoder.encode_points(inputs)


def extras(encoder: Any, tower: str) -> dict[str, str]:
    cfg = encoder.point_tower.cfg
    groups = json.dumps({"num_group": cfg.num_group, "group_size": cfg.group_size})
    return {FINGERPRINT: encoder.fingerprint() + "\n", GROUPS: groups}
