"""The ULIP-2 encoder (registry name "ulip2-pointbert", space "ulip"): point clouds and images.

Point clouds: file -> avsearch.media.pointcloud (8192 points, unit sphere) -> PointBERT -> L2-normalise.
Images: file -> resize 224 (bilinear), centre-crop 224, ImageNet mean/std (ULIP's evaluation transform)
-> SLIP ViT-B/16 + image_projection -> L2-normalise. Both towers come from `pointbert_ULIP-2.pt`, which
is checked entry by entry before loading (avsearch.encoders.ulip_checkpoint). ULIP's text tower is not
run: text reaches the ULIP space through CLIP and a bridge.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from avsearch.device import pick_device
from avsearch.encoders.base import Encoder
from avsearch.encoders.ulip_checkpoint import (
    EMBED_DIM,
    ULIP_CHECKPOINT,
    check_layout,
    load_point_tower,
    load_vision_tower,
    read_state_dict,
)
from avsearch.encoders.weights import resolve_weight
from avsearch.errors import ConfigError, IncompatibleError, InputError
from avsearch.media.image import load_image
from avsearch.media.pointcloud import load_pointcloud
from avsearch.modalities import IMAGE, POINTCLOUD

logger = logging.getLogger(__name__)

NAME = "ulip2-pointbert"
SPACE = "ulip"
ULIP_MODALITIES = (POINTCLOUD, IMAGE)
PREPROCESS_VERSION = "pc8192-fps-centroid-unit;img224-bilinear-imagenet"  # part of the fingerprint


@functools.cache
def _image_transform() -> Callable[[Any], torch.Tensor]:
    """ULIP main.py / SLIP evaluation transform (torchvision imported here: point clouds do not need it)."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(224),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )


def _prepare_image(path: Path) -> torch.Tensor:
    """One image file -> ULIP's image input (3, 224, 224) float32."""
    return _image_transform()(load_image(path))


class UlipEncoder:
    """ULIP-2 PointBERT (+ its SLIP image tower), loaded for the requested modalities only."""

    name = NAME
    space = SPACE
    dim = EMBED_DIM

    def __init__(
        self,
        checkpoint: Path,
        modalities: Sequence[str] = (POINTCLOUD,),
        device: torch.device | None = None,
        batch_points: int = 8,
        batch_images: int = 32,
    ) -> None:
        unknown = [m for m in modalities if m not in ULIP_MODALITIES]
        if unknown or not modalities:
            raise ConfigError(
                f"encoder {NAME!r} encodes {', '.join(ULIP_MODALITIES)}, not {', '.join(unknown) or '(none)'}"
            )
        self.modalities = tuple(m for m in ULIP_MODALITIES if m in modalities)
        self.device = device or pick_device(None)
        self.checkpoint = Path(checkpoint)
        self.batch_points = batch_points
        self.batch_images = batch_images
        self._fingerprint: str | None = None
        state = read_state_dict(self.checkpoint)
        check_layout(state, self.checkpoint, self.modalities)
        self.point_tower = load_point_tower(state).eval().to(self.device) if POINTCLOUD in modalities else None
        self.vision_tower = load_vision_tower(state).eval().to(self.device) if IMAGE in modalities else None
        del state
        logger.info("ULIP-2 loaded from %s (%s) on %s", self.checkpoint, ", ".join(self.modalities), self.device)

    # -- point clouds -------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_points(self, points: np.ndarray) -> np.ndarray:
        """Prepared clouds (B, N, 3), N >= 512 (load_pointcloud: 8192) -> (B, 512) float32, unit rows."""
        if self.point_tower is None:
            raise IncompatibleError(f"encoder {NAME!r} was loaded without the pointcloud tower")
        points = np.asarray(points, dtype=np.float32)
        if points.ndim != 3 or points.shape[2] != 3:
            raise InputError(f"point clouds must have shape (B, N, 3), got {points.shape}")
        out = np.empty((len(points), self.dim), dtype=np.float32)
        for start in range(0, len(points), self.batch_points):
            batch = torch.from_numpy(points[start : start + self.batch_points]).to(self.device)
            emb = F.normalize(self.point_tower(batch).float(), dim=-1)
            out[start : start + len(batch)] = emb.cpu().numpy()
        return out

    def preparer(self, modality: str) -> Callable[[Path], Any]:
        """The model-free decode step (picklable): a point-cloud or mesh file -> (8192, 3) float32, or
        an image file -> (3, 224, 224) float32."""
        if modality == POINTCLOUD:
            return load_pointcloud
        if modality == IMAGE:
            return _prepare_image
        raise IncompatibleError(f"encoder {NAME!r} encodes {', '.join(self.modalities)}, not {modality!r}")

    def prepare(self, modality: str, path: Path) -> Any:
        """Decode one file; DecodeError names a bad file."""
        return self.preparer(modality)(path)

    @torch.inference_mode()
    def encode_prepared(self, modality: str, items: Sequence[Any]) -> np.ndarray:
        """Prepared clouds [(N, 3)] or images [(3, 224, 224)] -> (len(items), 512) float32, unit rows."""
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        if modality == POINTCLOUD:
            return self.encode_points(np.stack(items))
        if self.vision_tower is None:
            raise IncompatibleError(f"encoder {NAME!r} was loaded without the image tower")
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for start in range(0, len(items), self.batch_images):
            batch = torch.stack(list(items[start : start + self.batch_images])).to(self.device)
            out[start : start + len(batch)] = F.normalize(self.vision_tower(batch).float(), dim=-1).cpu().numpy()
        return out

    # -- images -------------------------------------------------------------------------------
    def encode_images(self, paths: Sequence[Path]) -> np.ndarray:
        """Image files -> (len(paths), 512) float32, L2-normalised."""
        return self.encode_prepared(IMAGE, [_prepare_image(p) for p in paths])

    # -- Encoder protocol ---------------------------------------------------------------------
    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        """Decode and encode files of `modality`: (len(paths), 512) float32, rows L2-normalised."""
        if modality == POINTCLOUD:
            return embed_pointclouds(paths, self)
        if modality == IMAGE:
            return self.encode_images(paths)
        raise IncompatibleError(f"encoder {NAME!r} encodes {', '.join(self.modalities)}, not {modality!r}")

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Not offered: ULIP's text tower is not run; text reaches this space through CLIP + a bridge."""
        raise IncompatibleError(
            f"encoder {NAME!r} does not encode text; use clip-vit-b-32-openai and a ULIP-CLIP bridge"
        )

    def fingerprint(self) -> str:
        """sha256 (16 hex) of the checkpoint bytes + preprocessing; computed once, on first use."""
        if self._fingerprint is None:
            h = hashlib.sha256(f"{NAME}|{PREPROCESS_VERSION}|".encode())
            with self.checkpoint.open("rb") as fh:
                while chunk := fh.read(1 << 24):
                    h.update(chunk)
            self._fingerprint = f"{NAME}:{h.hexdigest()[:16]}"
        return self._fingerprint


def embed_pointclouds(paths: Sequence[Path | str], encoder: Encoder | UlipEncoder) -> np.ndarray:
    """Point-cloud/mesh files -> (len(paths), 512) float32 ULIP embeddings, rows L2-normalised.

    Reads one batch of files at a time (memory stays bounded for large lists). Raises DecodeError
    naming the first file that cannot be read.
    """
    if not isinstance(encoder, UlipEncoder):
        return encoder.encode_files(POINTCLOUD, [Path(p) for p in paths])
    out = np.empty((len(paths), encoder.dim), dtype=np.float32)
    step = encoder.batch_points
    for start in range(0, len(paths), step):
        clouds = np.stack([load_pointcloud(p) for p in paths[start : start + step]])
        out[start : start + len(clouds)] = encoder.encode_points(clouds)
    return out


def load_ulip_encoder(
    modalities: Sequence[str] | None = None,
    weights_dir: Path | str | None = None,
    device: str | torch.device | None = None,
) -> UlipEncoder:
    """Registry factory: ULIP-2 from `pointbert_ULIP-2.pt` (weights folder, env or caches).

    Raises WeightsMissingError naming the file and where to get it when it is not found.
    """
    path = resolve_weight(ULIP_CHECKPOINT, weights_dir)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    return UlipEncoder(path, tuple(modalities or (POINTCLOUD,)), dev)
