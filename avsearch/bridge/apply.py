"""Applying a bridge to arrays on disk: the library side of `avsearch project`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avsearch.bridge.io import open_bridge
from avsearch.errors import InputError


def read_embeddings(path: str | Path) -> np.ndarray:
    """Read a 2-D float .npy array without unpickling; NaN/inf and non-2-D arrays are errors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable numeric .npy array ({exc})") from exc
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{path}: expected a 2-D float array, got shape {arr.shape} dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: contains NaN or infinity")
    if np.any(np.linalg.norm(arr, axis=1) == 0):
        raise InputError(f"{path}: contains all-zero rows, which have no direction to project")
    return arr.astype(np.float32, copy=False)


def project_file(
    bridge_path: str | Path, space: str, src: str | Path, dst: str | Path, modality: str | None = None
) -> tuple[int, int]:
    """Project native embeddings of `modality` in `space` (`src`) into the bridge's shared space (`dst`).

    `modality` defaults to the side's memory modality (audio for clap, image for clip in the
    audio-visual bridge). Returns the output shape; output rows are L2-normalised.
    """
    bridge = open_bridge(bridge_path)
    modality = modality or bridge.meta.side(space).memory
    projected = bridge.project(space, read_embeddings(src), modality=modality)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    np.save(dst, projected)
    return projected.shape  # type: ignore[return-value]
