"""Training data for a bridge: pre-extracted embeddings in a folder, validated before any training.

The folder holds float32 .npy arrays named `{modality}.{space}.npy`: the overlap modality in both spaces
with the same row order, and one memory per space (see configs/*.toml). Arrays are memory-mapped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsearch.bridge.config import TrainConfig
from avsearch.errors import InputError

NORM_TOLERANCE = 1e-2  # rows must be unit length within this (fp16 encoders give ~1e-3)
CHECK_CHUNK = 1 << 16  # rows validated per step, so 1M-row arrays are checked in bounded memory


@dataclass(frozen=True)
class BridgeData:
    """Validated arrays: overlap[i] and memory[i] belong to side i of the config."""

    overlap: tuple[np.ndarray, np.ndarray]  # (N, d_i) each, same rows
    memory: tuple[np.ndarray, np.ndarray]  # (M_i, d_i)
    fingerprint: str  # sha256 over the four arrays' names, shapes and bytes

    @property
    def n_pairs(self) -> int:
        return int(self.overlap[0].shape[0])


def array_path(folder: Path, modality: str, space: str) -> Path:
    return folder / f"{modality}.{space}.npy"


def load_array(path: Path, dim: int) -> np.ndarray:
    """Open one embedding array and check it: 2-D float32, `dim` columns, finite, rows L2-normalised."""
    if not path.is_file():
        raise InputError(f"{path}: missing (expected a float32 array of shape (N, {dim}))")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle: refused
        raise InputError(f"{path}: not a plain numeric .npy array ({exc})") from exc
    except OSError as exc:
        raise InputError(f"{path}: unreadable .npy file ({exc})") from exc
    if arr.dtype != np.float32:
        raise InputError(f"{path}: dtype is {arr.dtype}, expected float32")
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InputError(f"{path}: shape is {tuple(arr.shape)}, expected (N, {dim})")
    if arr.shape[0] == 0:
        raise InputError(f"{path}: has no rows")
    for start in range(0, arr.shape[0], CHECK_CHUNK):
        block = np.asarray(arr[start : start + CHECK_CHUNK])
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            raise InputError(f"{path}: row {start + int(np.argmin(finite))} contains NaN or infinity")
        norms = np.linalg.norm(block, axis=1)
        bad = np.abs(norms - 1.0) > NORM_TOLERANCE
        if bad.any():
            row = int(np.argmax(bad))
            raise InputError(
                f"{path}: row {start + row} has L2 norm {norms[row]:.4f}; embeddings must be L2-normalised"
            )
    return arr


def load_bridge_data(folder: str | Path, config: TrainConfig) -> BridgeData:
    """Load and validate the four arrays a config needs from `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: embeddings folder not found")
    overlap = tuple(load_array(array_path(folder, config.overlap, s.space), s.dim) for s in config.sides)
    memory = tuple(load_array(array_path(folder, s.memory, s.space), s.dim) for s in config.sides)
    if overlap[0].shape[0] != overlap[1].shape[0]:
        a, b = (array_path(folder, config.overlap, s.space).name for s in config.sides)
        raise InputError(
            f"{folder}: {a} has {overlap[0].shape[0]} rows but {b} has {overlap[1].shape[0]}; "
            "overlap arrays must hold the same items in the same order"
        )
    if overlap[0].shape[0] < 2:
        raise InputError(f"{folder}: at least 2 overlap pairs are needed to train")
    names = [array_path(folder, config.overlap, s.space).name for s in config.sides]
    names += [array_path(folder, s.memory, s.space).name for s in config.sides]
    return BridgeData(overlap, memory, fingerprint_arrays(dict(zip(names, (*overlap, *memory), strict=True))))  # type: ignore[arg-type]


def fingerprint_arrays(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over names, shapes and bytes (chunked, so memory-mapped arrays are not loaded whole)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = arrays[name]
        h.update(f"{name}|{arr.dtype}|{arr.shape}|".encode())
        for start in range(0, arr.shape[0], CHECK_CHUNK):
            h.update(np.ascontiguousarray(arr[start : start + CHECK_CHUNK]).tobytes())
    return h.hexdigest()
