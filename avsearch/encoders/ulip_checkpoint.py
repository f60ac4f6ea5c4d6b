"""Reading and strictly checking ULIP-2's `pointbert_ULIP-2.pt` (layout: shared/ULIP-LAYOUT.md).

The file is ULIP's training checkpoint: {'state_dict': {'module.<key>': tensor, ...}, 'args': Namespace,
...}. It holds 462 entries: the point tower (`point_encoder.*`, `pc_projection`) that avsearch runs,
the image tower (`visual.*`, `image_projection`) used for the ULIP side of the 3D bridge, and a
CLIP-style text tower that avsearch does not run. Every entry is checked by name and shape before anything
loads, so a file of another ULIP variant fails with a message naming what differs instead of loading
half a model.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from torch import nn

from avsearch.checkpoints import load_mapped
from avsearch.encoders.pointbert import PointBertEncoder
from avsearch.errors import IncompatibleError, InputError
from avsearch.modalities import IMAGE, POINTCLOUD

logger = logging.getLogger(__name__)

ULIP_CHECKPOINT = "pointbert_ULIP-2.pt"  # published file name
VISION_ARCH = "vit_base_patch16_224"  # SLIP ViT-B/16, timm, num_classes=0 -> 768-d CLS feature
VISION_WIDTH = 768
EMBED_DIM = 512

# CLIP-style text tower of ULIP (SLIP text encoder): width 512, 12 layers, 77 tokens, vocab 49408.
_TEXT_WIDTH, _TEXT_LAYERS, _CONTEXT, _VOCAB = 512, 12, 77, 49408


def text_tower_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of the text-tower entries (present in the file, not run by avsearch)."""
    w = _TEXT_WIDTH
    shapes: dict[str, tuple[int, ...]] = {
        "positional_embedding": (_CONTEXT, w),
        "text_projection": (w, EMBED_DIM),
        "logit_scale": (),
        "token_embedding.weight": (_VOCAB, w),
        "ln_final.weight": (w,),
        "ln_final.bias": (w,),
    }
    for j in range(_TEXT_LAYERS):
        p = f"transformer.resblocks.{j}."
        shapes |= {
            p + "attn.in_proj_weight": (3 * w, w),
            p + "attn.in_proj_bias": (3 * w,),
            p + "attn.out_proj.weight": (w, w),
            p + "attn.out_proj.bias": (w,),
            p + "ln_1.weight": (w,),
            p + "ln_1.bias": (w,),
            p + "mlp.c_fc.weight": (4 * w, w),
            p + "mlp.c_fc.bias": (4 * w,),
            p + "mlp.c_proj.weight": (w, 4 * w),
            p + "mlp.c_proj.bias": (w,),
            p + "ln_2.weight": (w,),
            p + "ln_2.bias": (w,),
        }
    return shapes


def build_vision_tower() -> nn.Module:
    """ULIP's image tower: timm vit_base_patch16_224, num_classes=0 (random init; weights load later)."""
    import timm  # here: importing timm (and torchvision) is 2-3 s that a point-cloud query does not need

    return timm.create_model(VISION_ARCH, pretrained=False, num_classes=0)


def _shapes(module: nn.Module, prefix: str = "") -> dict[str, tuple[int, ...]]:
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}


def expected_layout(towers: tuple[str, ...] = (POINTCLOUD, IMAGE)) -> dict[str, tuple[int, ...]]:
    """The checkpoint's entry names (without 'module.') and shapes: all 462 by default; without IMAGE in
    `towers`, all but the image tower's (whose layout takes timm to build)."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        layout = _shapes(PointBertEncoder()) | text_tower_shapes()
        if IMAGE in towers:
            layout |= _shapes(build_vision_tower(), "visual.")
            layout["image_projection"] = (VISION_WIDTH, EMBED_DIM)
    return layout


def _image_tower_entry(key: str) -> bool:
    return key.startswith("visual.") or key == "image_projection"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load the checkpoint's state dict with the 'module.' prefix removed.

    Unpickling is weights-only; ULIP's `args` entry (an argparse.Namespace) is the one extra class
    allowed. The file is memory-mapped where its format allows, so the unused text tower is not read.
    """
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    obj = load_mapped(path, "ULIP", allowed=[argparse.Namespace])
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise IncompatibleError(f"{path}: expected a ULIP checkpoint with a 'state_dict' of tensors")
    # DDP training prefixes every key with 'module.'; strip only that leading prefix.
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def check_layout(
    state: dict[str, torch.Tensor], path: Path | str, towers: tuple[str, ...] = (POINTCLOUD, IMAGE)
) -> None:
    """Raise IncompatibleError unless `state` has exactly ULIP-2 PointBERT's entries and shapes.

    Without IMAGE in `towers` the image tower's entries are not checked (they are not loaded either).
    """
    layout = expected_layout(towers)
    missing = sorted(set(layout) - set(state))
    unchecked = set() if IMAGE in towers else {k for k in state if _image_tower_entry(k)}
    unexpected = sorted(set(state) - set(layout) - unchecked)
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} (expected {layout[k]})"
        for k in set(layout) & set(state)
        if tuple(state[k].shape) != layout[k]
    )
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            shown = ", ".join(keys[:4]) + (f", ... ({len(keys)} in all)" if len(keys) > 4 else "")
            problems.append(f"{what}: {shown}")
    if problems:
        raise IncompatibleError(
            f"{path}: not the ULIP-2 PointBERT (xyz, SLIP ViT-B/16) checkpoint {ULIP_CHECKPOINT}; "
            + "; ".join(problems)
        )


def sub_state(state: dict[str, torch.Tensor], names: list[str], prefix: str = "") -> dict[str, torch.Tensor]:
    """Entries `prefix + name` of `state`, renamed to `name` (for module.load_state_dict)."""
    return {n: state[prefix + n] for n in names}


def load_point_tower(state: dict[str, torch.Tensor]) -> PointBertEncoder:
    """A PointBertEncoder holding the checkpoint's point_encoder.* and pc_projection (strict)."""
    model = PointBertEncoder()
    model.load_state_dict(sub_state(state, list(model.state_dict())), strict=True)
    return model


class VisionTower(nn.Module):
    """ULIP's image tower: ViT-B/16 CLS feature (768) @ image_projection -> (B, 512), unnormalised."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = build_vision_tower()
        self.image_projection = nn.Parameter(torch.empty(VISION_WIDTH, EMBED_DIM))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images) @ self.image_projection


def load_vision_tower(state: dict[str, torch.Tensor]) -> VisionTower:
    """A VisionTower holding the checkpoint's visual.* and image_projection (strict)."""
    model = VisionTower()
    model.load_state_dict(sub_state(state, list(model.state_dict())), strict=True)
    return model
