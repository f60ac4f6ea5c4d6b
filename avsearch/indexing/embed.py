"""Embed files in batches for an index; one bad file costs itself, never its batch or the run."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from avsearch.embedding.models import Models
from avsearch.media.failures import encode_each

log = logging.getLogger(__name__)


def embed_batch(
    models: Models, modality: str, paths: Sequence[str]
) -> tuple[list[int], np.ndarray, list[tuple[str, str]]]:
    """Encode files of one modality: (indices of the files that worked, native (M, d), failures with
    their reasons); the policy is media/failures.py's."""
    encoder = models.file_encoder(modality)
    return encode_each(lambda files: encoder.encode_files(modality, files), paths, encoder.dim)
