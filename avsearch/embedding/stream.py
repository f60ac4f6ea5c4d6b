"""Encoding batches of files while the next batch decodes: the one loop `avsearch index` and `avsearch
embed` feed their encoders with.

Encoders with `prepare(modality, path)` / `encode_prepared(modality, items)` (CLIP, CLAP) have the
next batch decoded in worker threads while the model runs on this one (decoders release the GIL in
PIL, libsndfile and numpy); a file that fails to decode costs only itself, with its one-line reason
(media/failures.py). Other encoders go through `encode_each`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.encoders.base import Encoder
from avsearch.errors import InputError
from avsearch.media.failures import Failure, encode_each, reason

DECODE_WORKERS = 2  # threads decoding the next batch; more starve the model's own threads on small CPUs


def encode_batches(
    encoder: Encoder, modality: str, batches: Sequence[Sequence[str]]
) -> Iterator[tuple[list[int], np.ndarray, list[Failure]]]:
    """For each batch of paths, in order: (positions in the batch that were encoded, their vectors (M, d),
    failures (path, reason))."""
    if not batches:
        return
    if not hasattr(encoder, "prepare"):
        for paths in batches:
            yield encode_each(lambda files: encoder.encode_files(modality, files), paths, encoder.dim)
        return
    with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
        pending = _decode(encoder, modality, batches[0], pool)
        for i, paths in enumerate(batches):
            decoded = [f.result() for f in pending]
            if i + 1 < len(batches):  # the next batch decodes while this one is encoded
                pending = _decode(encoder, modality, batches[i + 1], pool)
            ok = [j for j, d in enumerate(decoded) if not isinstance(d, InputError)]
            failed = [(p, reason(d, p)) for p, d in zip(paths, decoded, strict=True) if isinstance(d, InputError)]
            if ok:
                vectors = encoder.encode_prepared(modality, [decoded[j] for j in ok])  # type: ignore[attr-defined]
            else:
                vectors = np.zeros((0, encoder.dim), np.float32)
            yield ok, vectors, failed


def _decode(encoder: Encoder, modality: str, paths: Sequence[str], pool: ThreadPoolExecutor) -> list[Future]:
    def one(path: str) -> Any:
        try:
            return encoder.prepare(modality, Path(path))  # type: ignore[attr-defined]
        except InputError as exc:  # the bad-file policy: decode errors are per file; bugs surface
            return exc

    return [pool.submit(one, p) for p in paths]
