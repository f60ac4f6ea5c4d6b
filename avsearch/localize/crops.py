"""Proposal crops through the CLIP image tower, with exactly the preprocessing of whole pictures.

A whole picture goes file -> load_image -> the encoder's geometric steps (shortest-side resize, centre
crop; ClipEncoder.preprocess minus its last two steps) -> uint8 -> ClipEncoder.encode_prepared, which
scales and normalises per batch. A crop takes the same road from the PIL crop on: the same transform
object's steps and the same encode_prepared, so a crop equal to a whole picture gets its vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from avsearch.errors import IncompatibleError
from avsearch.localize.proposals import Box
from avsearch.media.image import bounded_crop
from avsearch.modalities import IMAGE


class CropEmbedder:
    """Embeds the boxes of one picture with a loaded CLIP encoder (ClipEncoder), `batch` crops a forward."""

    def __init__(self, encoder: Any, batch: int = 32) -> None:
        from torchvision.transforms import Compose

        steps = list(encoder.preprocess.transforms)
        # The last two steps (to tensor, normalise) run per batch inside encode_prepared, as for files.
        if [type(t).__name__ for t in steps[-2:]] != ["MaybeToTensor", "Normalize"]:
            raise IncompatibleError(f"{encoder.name}: unexpected image transform {steps}")
        self.encoder = encoder
        self.batch = max(1, batch)
        self._geometry = Compose(steps[:-2])

    def prepare(self, image: Image.Image, box: Box) -> torch.Tensor:
        """One crop as CLIP's input before scaling: (3, size, size) uint8."""
        left, top = int(np.floor(box.x0)), int(np.floor(box.y0))
        right, bottom = max(left + 1, int(np.ceil(box.x1))), max(top + 1, int(np.ceil(box.y1)))
        # a thin box would resize to gigabytes; its middle, all the centre crop keeps, is cut out instead
        crop = self._geometry(image.crop(bounded_crop(left, top, right, bottom)))
        return torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()

    def embed(self, image: Image.Image, boxes: Sequence[Box]) -> np.ndarray:
        """(len(boxes), dim) float32, rows L2-normalised, in the order of `boxes`."""
        rows = []
        for start in range(0, len(boxes), self.batch):
            items = [self.prepare(image, b) for b in boxes[start : start + self.batch]]
            rows.append(self.encoder.encode_prepared(IMAGE, items))
        return np.concatenate(rows) if rows else np.zeros((0, self.encoder.dim), np.float32)
