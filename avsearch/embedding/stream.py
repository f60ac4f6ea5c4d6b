"""Encoding batches of files while the next batches decode: the one loop `avsearch index` and `avsearch
embed` feed their encoders with.

Encoders with `preparer(modality)` (a picklable, model-free decode step) and
`encode_prepared(modality, items)` (CLIP, CLAP, ULIP-2) have the next batches decoded by workers while
the model runs on this thread. Workers are threads (decoders release the GIL in PIL, libsndfile and
numpy; enough when the model itself needs the CPU) or, to keep a GPU fed, processes: torch's DataLoader
with its shared-memory transfer, one batch per worker at a time, `prefetch` batches ahead. A file that
fails to decode costs only itself, with its one-line reason (media/failures.py); a bug in decoding
surfaces. Other encoders go through `encode_each`.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.encoders.base import Encoder
from avsearch.errors import ConfigError, InputError
from avsearch.media.failures import Failure, encode_each, reason

log = logging.getLogger(__name__)

Decoded = Any | InputError  # a prepared item, or the reason its file could not be decoded
MODES = ("auto", "threads", "processes")


@dataclass(frozen=True)
class DecodePlan:
    """How decoding runs beside the model: `workers` threads or processes, `prefetch` batches ahead."""

    mode: str  # "threads" or "processes"
    workers: int
    prefetch: int


def plan_decode(
    encoder: Encoder, n_batches: int, mode: str = "auto", workers: int = 0, prefetch: int = 2
) -> DecodePlan:
    """Pick the decode workers. auto: processes when the model runs on a GPU (decoding is then the
    bottleneck) and the machine has cores to spare and the run is long enough to pay their start-up;
    otherwise 2 threads, which leave the CPU to a model that runs on it."""
    if mode not in MODES:
        raise ConfigError(f"decode mode {mode!r}: use one of {', '.join(MODES)}")
    cores = os.cpu_count() or 1
    on_gpu = str(getattr(encoder, "device", "cpu")).startswith("cuda")
    if mode == "auto":
        mode = "processes" if on_gpu and cores >= 4 and n_batches >= 4 else "threads"
    if workers <= 0:
        workers = min(16, max(1, cores - 1)) if mode == "processes" else 2
    return DecodePlan(mode, workers, max(1, prefetch))


def encode_batches(
    encoder: Encoder, modality: str, batches: Sequence[Sequence[str]], plan: DecodePlan | None = None
) -> Iterator[tuple[list[int], np.ndarray, list[Failure]]]:
    """For each batch of paths, in order: (positions in the batch that were encoded, their vectors (M, d),
    failures (path, reason)). `plan` defaults to configs/search.toml [ingest] decode settings."""
    if not batches:
        return
    if not hasattr(encoder, "preparer"):
        for paths in batches:
            yield encode_each(lambda files: encoder.encode_files(modality, files), paths, encoder.dim)
        return
    if plan is None:
        from avsearch.store.config import load_search_config

        cfg = load_search_config().ingest
        plan = plan_decode(encoder, len(batches), cfg.decode, cfg.decode_workers, cfg.prefetch_batches)
    decoded_batches = decode_batches(encoder.preparer(modality), batches, plan)  # type: ignore[attr-defined]
    for paths, decoded in zip(batches, decoded_batches, strict=True):
        ok = [j for j, d in enumerate(decoded) if not isinstance(d, InputError)]
        failed = [(p, reason(d, p)) for p, d in zip(paths, decoded, strict=True) if isinstance(d, InputError)]
        if ok:
            vectors = encoder.encode_prepared(modality, [decoded[j] for j in ok])  # type: ignore[attr-defined]
        else:
            vectors = np.zeros((0, encoder.dim), np.float32)
        yield ok, vectors, failed


def decode_batches(
    prepare: Callable[[Path], Any], batches: Sequence[Sequence[str]], plan: DecodePlan
) -> Iterator[list[Decoded]]:
    """Each batch decoded by `prepare`, in order: a prepared item or the InputError of its file."""
    return _in_processes(prepare, batches, plan) if plan.mode == "processes" else _in_threads(prepare, batches, plan)


def _decode_one(prepare: Callable[[Path], Any], path: str) -> Decoded:
    try:
        return prepare(Path(path))
    except InputError as exc:  # the bad-file policy: decode errors are per file; bugs surface
        return exc


def _in_threads(
    prepare: Callable[[Path], Any], batches: Sequence[Sequence[str]], plan: DecodePlan
) -> Iterator[list[Decoded]]:
    """Decoded batches in order, `plan.prefetch` batches submitted ahead of the one being encoded."""
    with ThreadPoolExecutor(max_workers=plan.workers) as pool:
        pending: deque[list[Future]] = deque()
        next_batch = 0
        for _ in range(len(batches)):
            while next_batch < len(batches) and len(pending) <= plan.prefetch:
                pending.append([pool.submit(_decode_one, prepare, p) for p in batches[next_batch]])
                next_batch += 1
            yield [f.result() for f in pending.popleft()]


class _BatchDecoder:
    """A map-style dataset over batches (picklable: it runs in DataLoader worker processes)."""

    def __init__(self, prepare: Callable[[Path], Any], batches: Sequence[Sequence[str]]) -> None:
        self.prepare, self.batches = prepare, [list(b) for b in batches]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list[Decoded]:
        return [_decode_one(self.prepare, p) for p in self.batches[i]]


def _in_processes(
    prepare: Callable[[Path], Any], batches: Sequence[Sequence[str]], plan: DecodePlan
) -> Iterator[list[Decoded]]:
    """Decoded batches in order from `plan.workers` processes (torch DataLoader, forkserver start: the
    parent holds model, CUDA and LanceDB threads that a fork must not copy)."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _BatchDecoder(prepare, batches),
        batch_size=None,  # each dataset item is already one batch
        num_workers=min(plan.workers, len(batches)),
        prefetch_factor=plan.prefetch,
        multiprocessing_context="forkserver",
        worker_init_fn=_one_thread,
        pin_memory=torch.cuda.is_available(),
        collate_fn=_as_is,
    )
    log.debug("decoding in %d worker processes", loader.num_workers)
    yield from loader


def _one_thread(_worker: int) -> None:
    """A decode worker uses one thread: the parallelism is across workers."""
    import torch

    torch.set_num_threads(1)


def _as_is(batch: list[Decoded]) -> list[Decoded]:
    return batch
