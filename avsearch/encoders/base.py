"""The encoder interface every frozen contrastive model (CLIP, CLAP, ULIP-2) implements.

An encoder belongs to one contrastive *space* (e.g. "clip") and encodes some *modalities* of it
(e.g. "image", "text") into L2-normalised float32 vectors of `dim` columns. Encoders are loaded once
(with only the towers a command needs) and used for many batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """A loaded frozen encoder of one contrastive space."""

    name: str  # registry name, e.g. "clip-vit-b-32-openai"
    space: str  # contrastive space it encodes into, e.g. "clip", "clap", "ulip"
    modalities: tuple[str, ...]  # modalities loaded (only the towers asked for)
    dim: int  # embedding width

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        """Decode and encode media files: (len(paths), dim) float32, rows L2-normalised.

        Raises avsearch.errors.DecodeError naming the file when one cannot be decoded.
        """
        ...

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts: (len(texts), dim) float32, rows L2-normalised. Empty text is an InputError."""
        ...

    def fingerprint(self) -> str:
        """Identifies encoder + weights + preprocessing; stored with indexes and bridges."""
        ...
