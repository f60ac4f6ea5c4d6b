"""Shared runtime helpers for encoder adapters: precision, batch sizing, chunking, fingerprints."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from avsearch.encoders.identity import file_identity as file_identity  # re-exported (torch-free)
from avsearch.encoders.identity import fingerprint as fingerprint  # re-exported (torch-free)

log = logging.getLogger(__name__)
T = TypeVar("T")

# GPU batches scale with free memory: this many GiB free per multiple of the CPU batch size.
_GIB_PER_STEP = 4.0
_MAX_SCALE = 8


def dtype_for(device: torch.device) -> torch.dtype:
    """Half precision on CUDA (twice the throughput, same ranking), float32 on CPU."""
    return torch.float16 if device.type == "cuda" else torch.float32


def batch_size_for(device: torch.device, base: int) -> int:
    """Batch size sized to memory: `base` on CPU; on CUDA scaled by free memory (up to 8x)."""
    if device.type != "cuda":
        return max(1, base)
    free, _total = torch.cuda.mem_get_info(device)
    scale = int(min(_MAX_SCALE, max(1.0, free / (_GIB_PER_STEP * 2**30))))
    return max(1, base * scale)


def require_tower(encoder: Any, modality: str) -> None:
    """Refuse to encode a modality whose tower was not loaded (encoders load only what a command needs)."""
    if modality not in encoder.modalities:
        from avsearch.errors import ConfigError

        raise ConfigError(f"{encoder.name} was loaded without its {modality} tower")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_batched(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, batch: int) -> torch.Tensor:
    """Run `forward` over `inputs` (N, ...) in batches; halve the batch on CUDA out-of-memory.

    Returns (N, D) float32 on CPU, rows L2-normalised.
    """
    outputs: list[torch.Tensor] = []
    start = 0
    while start < inputs.shape[0]:
        part = inputs[start : start + batch]
        try:
            out = forward(part)
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            batch = max(1, batch // 2)
            torch.cuda.empty_cache()
            log.warning("CUDA out of memory: retrying with batch %d", batch)
            continue
        outputs.append(torch.nn.functional.normalize(out.float(), dim=-1).cpu())
        start += part.shape[0]
    return torch.cat(outputs) if outputs else torch.empty(0)


def as_numpy(t: torch.Tensor, dim: int) -> np.ndarray:
    """(N, dim) float32 C-contiguous array; an empty input gives shape (0, dim)."""
    if t.numel() == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return np.ascontiguousarray(t.numpy(), dtype=np.float32)
