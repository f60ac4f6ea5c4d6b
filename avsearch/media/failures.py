"""The one bad-file policy, shared by `avsearch index`, `avsearch embed` and 3D evaluation.

- A file whose content is not audio, an image, a video or a point cloud is "not media" (NOT_MEDIA), counted and
  listed, never an error.
- A file that looks like media and cannot be decoded raises DecodeError (an InputError) in media/*;
  the run lists it with the error's one-line reason and goes on with the other files.
- Any other exception is a bug in avsearch, not a bad file: it surfaces.
Encoding is batched; a batch that fails is retried file by file, so only the bad files are left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from avsearch.errors import InputError

log = logging.getLogger(__name__)

NOT_MEDIA = "not an audio, image, video or point-cloud file"

Failure = tuple[str, str]  # (path, one-line reason)


def reason(exc: InputError, path: str | Path) -> str:
    """The error's first line without the leading file name (listings print the path themselves)."""
    message = str(exc).strip()
    message = message.splitlines()[0] if message else "unknown error"
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def encode_each(
    encode: Callable[[list[Path]], np.ndarray], paths: Sequence[str | Path], dim: int
) -> tuple[list[int], np.ndarray, list[Failure]]:
    """encode(paths) as one batch; when a file in it is bad, file by file: (indices encoded, their vectors
    (M, dim), failures)."""
    files = [Path(p) for p in paths]
    try:
        return list(range(len(files))), encode(files), []
    except InputError as exc:
        log.info("a batch of %d files failed (%s); encoding them one by one", len(files), exc)
    ok: list[int] = []
    rows: list[np.ndarray] = []
    failed: list[Failure] = []
    for i, path in enumerate(files):
        try:
            rows.append(encode([path]))
            ok.append(i)
        except InputError as exc:
            failed.append((str(paths[i]), reason(exc, path)))
    return ok, (np.concatenate(rows) if rows else np.zeros((0, dim), np.float32)), failed
