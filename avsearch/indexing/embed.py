"""Embed files in batches; one bad file costs itself, never its batch or the run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avsearch.embedding.models import Models
from avsearch.errors import AvsearchError

log = logging.getLogger(__name__)


def embed_batch(
    models: Models, modality: str, paths: Sequence[str]
) -> tuple[list[int], np.ndarray, list[tuple[str, str]]]:
    """Encode files of one modality: (indices of the files that worked, native (M, d), failures).

    The whole batch goes to the encoder at once; when it raises, each file is retried alone so the
    bad ones are found and named with their reason.
    """
    encoder = models.file_encoder(modality)
    try:
        return list(range(len(paths))), encoder.encode_files(modality, [Path(p) for p in paths]), []
    except Exception as exc:  # a bad file anywhere in the batch: find it below
        log.info("batch of %d %s files failed (%s); retrying one by one", len(paths), modality, exc)
    ok: list[int] = []
    rows: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []
    for i, path in enumerate(paths):
        try:
            rows.append(encoder.encode_files(modality, [Path(path)]))
            ok.append(i)
        except AvsearchError as exc:
            failed.append((path, _reason(str(exc), path)))
        except Exception as exc:  # decoders raise many kinds; the file is reported, the run goes on
            failed.append((path, f"{type(exc).__name__}: {_reason(str(exc), path)}"))
    native = np.concatenate(rows) if rows else np.zeros((0, encoder.dim), np.float32)
    return ok, native, failed


def _reason(message: str, path: str) -> str:
    """The error message without the leading file name (the summary prints the path itself)."""
    message = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return message[len(path) + 2 :] if message.startswith(path + ": ") else message
