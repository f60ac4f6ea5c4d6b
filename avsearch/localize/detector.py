"""torchvision's COCO detectors as a proposal source, from their published weights files.

The paper uses GLIP (open-vocabulary, prompted with the COCO class names); GLIP does not install here,
so avsearch offers torchvision's COCO-trained Faster R-CNN v2 and RetinaNet v2 when their files are in
the weights folder (or torch's own cache), and any other detector's output through `--boxes` (boxes_file.py).
The v2 builders use plain BatchNorm with or without pretrained weights, so a model built without
weights loads the published state dict strictly: the architecture is torchvision's own.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avsearch.checkpoints import is_refusal, loading, refusal
from avsearch.encoders.weights import find_file, locate, resolve_weight
from avsearch.errors import IncompatibleError
from avsearch.localize.config import DetectorConfig
from avsearch.localize.proposals import Box, ProposalSource

log = logging.getLogger(__name__)

# Detector name -> [files.*] key in configs/encoders.toml (the published file name lives there).
DETECTOR_FILES = {
    "fasterrcnn_resnet50_fpn_v2": "fasterrcnn_resnet50_fpn_v2_coco",
    "retinanet_resnet50_fpn_v2": "retinanet_resnet50_fpn_v2_coco",
}

_cache: dict[tuple[str, str, str, int, int], torch.nn.Module] = {}
_lock = threading.Lock()


def detector_available(name: str, weights_dir: Path | str | None = None) -> bool:
    """Whether the detector's weights file is already on this machine (no download is tried)."""
    return locate(find_file(DETECTOR_FILES[name]), weights_dir).path is not None


def _build(name: str, cfg: DetectorConfig) -> torch.nn.Module:
    from torchvision.models import detection

    builder = getattr(detection, name)
    # weights=None and no backbone weights: nothing is downloaded; the state dict comes from our file.
    return builder(
        weights=None,
        weights_backbone=None,
        num_classes=91,
        box_score_thresh=cfg.score_threshold,
        min_size=cfg.min_size,
        max_size=cfg.max_size,
    )


def load_detector(
    cfg: DetectorConfig, weights_dir: Path | str | None = None, device: torch.device | None = None
) -> torch.nn.Module:
    """The detector `cfg.name` with its published COCO weights, in eval mode (once per process)."""
    device = device or torch.device("cpu")
    path = resolve_weight(find_file(DETECTOR_FILES[cfg.name]).name, weights_dir)
    key = (cfg.name, str(path), str(device), cfg.min_size, cfg.max_size)
    with _lock:
        if key not in _cache:
            model = _build(cfg.name, cfg)
            try:
                with loading():
                    state = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as exc:
                if is_refusal(exc):
                    raise refusal(path, exc) from None
                raise IncompatibleError(f"{path}: cannot be read as a torch checkpoint ({exc})") from exc
            try:
                model.load_state_dict(state, strict=True)
            except (RuntimeError, TypeError, AttributeError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise IncompatibleError(f"{path}: not a torchvision {cfg.name} COCO checkpoint ({first})") from exc
            _cache[key] = model.eval().to(device)
            log.info("detector %s loaded from %s on %s", cfg.name, path, device)
        return _cache[key]


def coco_labels() -> list[str]:
    """COCO category names as torchvision's detectors number them (index = label id)."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_V2_Weights

    return list(FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"])


def detector_source(
    cfg: DetectorConfig, weights_dir: Path | str | None = None, device: torch.device | None = None
) -> ProposalSource:
    """A proposal source running the detector; boxes come highest detector score first."""
    model = load_detector(cfg, weights_dir, device)
    labels = coco_labels()
    dev = next(model.parameters()).device

    @torch.inference_mode()
    def propose(image: Image.Image) -> list[Box]:
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
        found = model([pixels.to(dev).float().div(255)])[0]
        order = torch.argsort(found["scores"], descending=True)
        boxes = []
        for i in order.tolist():
            x0, y0, x1, y1 = (float(v) for v in found["boxes"][i])
            label_id = int(found["labels"][i])
            label = labels[label_id] if 0 <= label_id < len(labels) else str(label_id)
            boxes.append(Box(x0, y0, x1, y1, "detector", label, float(found["scores"][i])))
        return boxes

    return propose
