"""PointBERT's grouping in numpy, for the ONNX query path: farthest-point sampling and kNN neighbourhoods
exactly as avsearch.encoders.pointbert computes them with torch (same float32 arithmetic in the same
order, the same tie rule), so the exported transformer gets the groups the torch forward builds.

FPS's loop of 512 data-dependent steps has no faithful ONNX form, and neither has torch.topk's choice
among equal distances; here each is plain numpy. Equal distances (a cloud padded with repeated points
holds exact duplicates) may pick another index than torch's topk, whose order among ties is unspecified,
but never another point: the neighbourhood's coordinates, which is all the model sees, are the same
(tests/encoders/test_onnx_audio_pointcloud.py compares indices and coordinates with the torch functions).
"""

from __future__ import annotations

import numpy as np


def farthest_point_sample(xyz: np.ndarray, n: int) -> np.ndarray:
    """pointbert.farthest_point_sample in numpy: xyz (B, N, 3) float32 -> indices (B, n) int64, starting
    from the point farthest from each cloud's centroid (the lowest index on ties)."""
    xyz = np.asarray(xyz, dtype=np.float32)
    b, num, _ = xyz.shape
    if n > num:
        raise ValueError(f"cannot sample {n} points from a cloud of {num}")
    rows = np.arange(b)
    centroid = xyz.mean(axis=1, keepdims=True, dtype=np.float32)
    farthest = _squared(xyz - centroid).argmax(-1)
    min_dist = np.full((b, num), np.inf, dtype=np.float32)
    idx = np.empty((b, n), dtype=np.int64)
    for i in range(n):
        idx[:, i] = farthest
        np.minimum(min_dist, _squared(xyz - xyz[rows, farthest][:, None]), out=min_dist)
        farthest = min_dist.argmax(-1)
    return idx


def _squared(d: np.ndarray) -> np.ndarray:
    """Sum of squares over the last axis of size 3, added left to right as torch's sum(-1) does."""
    sq = d * d
    return sq[..., 0] + sq[..., 1] + sq[..., 2]


def knn_indices(k: int, xyz: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """pointbert.knn_indices in numpy: the k nearest points of xyz (B, N, 3) to each centre (B, G, 3),
    nearest first -> (B, G, k), by the same squared-distance expansion."""
    dist = np.float32(-2.0) * (centres @ xyz.transpose(0, 2, 1))
    dist += _squared(centres)[..., None]
    dist += _squared(xyz)[:, None, :]
    part = np.argpartition(dist, k - 1, axis=-1)[..., :k]
    order = np.take_along_axis(dist, part, axis=-1).argsort(axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)


def group_points(xyz: np.ndarray, num_group: int, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """xyz (B, N, 3) -> (neighbourhoods (B, G, K, 3) centred on their centre, centres (B, G, 3)), float32:
    pointbert.group_points' values."""
    xyz = np.asarray(xyz, dtype=np.float32)
    rows = np.arange(xyz.shape[0])[:, None]
    centres = xyz[rows, farthest_point_sample(xyz, num_group)]
    neighbourhood = xyz[rows[:, :, None], knn_indices(group_size, xyz, centres)]
    return neighbourhood - centres[:, :, None], centres
