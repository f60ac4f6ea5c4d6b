"""Exact search in torch on a GPU, for flat indexes FAISS cannot put on that GPU.

faiss-gpu brings its own CUDA 12 runtime beside torch's; where its GPU kernels do not run (no GPU it
knows, a driver it does not accept), torch still reaches the GPU. A flat index is a matrix product and a
top-k: in fp16 on an H200 one query over 1M x 512 took 0.34 ms with top-10 agreeing with fp32 at 0.998
(issue 13), so below ~10M vectors a GPU needs no approximate index at all.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class TorchExact:
    """The `search(queries, k)` of a FAISS flat inner-product index, answered by torch on `device`."""

    def __init__(self, vectors: np.ndarray, device: str, half: bool = True) -> None:
        import torch

        self.device = torch.device(device)
        self.dtype = torch.float16 if half else torch.float32
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors, np.float32)).to(self.device, self.dtype)

    @classmethod
    def from_flat(cls, index: Any, device: str, half: bool = True) -> TorchExact:
        """From a FAISS flat index (its vectors, reconstructed)."""
        return cls(index.reconstruct_n(0, index.ntotal), device, half)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.no_grad():
            q = torch.from_numpy(np.ascontiguousarray(queries, np.float32)).to(self.device, self.dtype)
            top = torch.topk((q @ self.vectors.T).float(), min(k, self.vectors.shape[0]), dim=1)
        return top.values.cpu().numpy(), top.indices.cpu().numpy().astype(np.int64)


def nvidia_driver() -> bool:
    """Whether this machine may have a GPU for FAISS or torch: on Linux, an NVIDIA driver is loaded;
    elsewhere, unknown (then they are asked). Without one, no need to import either to learn that."""
    return not sys.platform.startswith("linux") or Path("/proc/driver/nvidia").exists()


def torch_gpu() -> str | None:
    """The torch device to search on when FAISS has no GPU: "cuda" when torch sees one, else None."""
    if "torch" not in sys.modules and not nvidia_driver():
        return None  # no NVIDIA driver: no need to import torch (~2 s) to learn that CUDA is absent
    try:
        import torch
    except ImportError:
        return None
    return "cuda" if torch.cuda.is_available() else None


def planned_engine(device: str | None) -> str:
    """Which engine queries on this machine will use for flat indexes (for `avsearch info`)."""
    if device is not None and not device.startswith("cuda"):
        return "faiss-cpu (--device/AVSEARCH_DEVICE asks for the CPU)"
    if not nvidia_driver():
        return "faiss-cpu (no GPU)"  # said without importing FAISS (0.2 s) or torch (2 s)
    from avsearch.store.ann import gpu_count

    if gpu_count() > 0:
        return f"faiss-gpu ({gpu_count()} GPU)"
    if torch_gpu() is not None:
        return "torch-cuda (FAISS sees no GPU; torch does)"
    return "faiss-cpu (no GPU)"
