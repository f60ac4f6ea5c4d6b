"""Test-only: a synthetic localisation world on the REAL CLIP and CLAP architectures (random weights).

How it is built (so that the right answer is known without trusting the code under test):
- patches: 128 x 128 textured squares, each saved as its own PNG; their CLIP vectors (the targets) come
  from `ClipEncoder.encode_files` on those files, the whole-picture path, not from the crop code.
- scenes: a 384 x 384 grey-noise background with some patches pasted on cells of its 3 x 3 grid, so the
  patch box is a grid proposal and a crop of it is pixel-equal to the patch file.
- sounds: one tone per patch. The bridge (`clap_clip.pt`, the released layout: Head_A = CLAP side, Head_B
  = CLIP side) is built so that its CLIP head is the identity and its CLAP head the linear map W with
  W clap(sound_k) = clip(patch_k): each layer pair is Linear [I; -I] -> BatchNorm (identity statistics)
  -> ReLU -> Linear [M, -M] -> BatchNorm, which computes M x exactly. So the projected sound k is the
  projected patch k, and the proposal that is patch k scores cosine 1 with it.
A localiser that cuts the wrong pixels, preprocesses crops differently, projects through the wrong head,
shuffles boxes against their scores or ranks them the wrong way finds another box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tests.search.media_factory import write_audio

CELL = 128
SIDE = 3 * CELL


@dataclass
class World:
    weights: Path  # weights folder: ViT-B-32.pt, 630k-fusion-best.pt, roberta-base/, clap_clip.pt
    patches: list[Path]
    sounds: list[Path]
    scenes: list[Path]
    placements: list[dict[int, tuple[int, int, int, int]]]  # scene -> {patch index: box in pixels}


def patch_picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 225, size=3)
    stripes = (np.arange(CELL)[:, None] // (4 + seed % 5) % 2) * 60
    pixels = base + stripes[..., None] + rng.integers(-25, 25, size=(CELL, CELL, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def background(seed: int) -> Image.Image:
    rng = np.random.default_rng(1000 + seed)
    return Image.fromarray(rng.integers(100, 140, size=(SIDE, SIDE, 3)).astype(np.uint8))


def _identity_pair(m: torch.Tensor, prefix: str, state: dict[str, torch.Tensor]) -> None:
    """Released two-layer head computing x -> m x exactly (up to BatchNorm's eps, a common scale)."""
    d = m.shape[1]
    eye = torch.eye(d)
    state[f"{prefix}.net1.0.weight"] = torch.cat([eye, -eye])
    state[f"{prefix}.net1.0.bias"] = torch.zeros(2 * d)
    state[f"{prefix}.net2.0.weight"] = torch.cat([m, -m], dim=1)
    state[f"{prefix}.net2.0.bias"] = torch.zeros(m.shape[0])
    for norm, width in ((f"{prefix}.net1.1", 2 * d), (f"{prefix}.net2.1", m.shape[0])):
        state[f"{norm}.weight"], state[f"{norm}.bias"] = torch.ones(width), torch.zeros(width)
        state[f"{norm}.running_mean"], state[f"{norm}.running_var"] = torch.zeros(width), torch.ones(width)
        state[f"{norm}.num_batches_tracked"] = torch.tensor(1)


def write_controlled_bridge(path: Path, clap_vectors: np.ndarray, clip_targets: np.ndarray) -> Path:
    """clap_clip.pt whose CLAP head maps clap_vectors[k] onto clip_targets[k] and whose CLIP head is I."""
    c = clap_vectors.astype(np.float64).T  # (512, K)
    t = clip_targets.astype(np.float64).T
    w = torch.tensor(t @ np.linalg.pinv(c), dtype=torch.float32)
    state: dict[str, torch.Tensor] = {}
    _identity_pair(w, "Head_A", state)  # CLAP side
    _identity_pair(torch.eye(clip_targets.shape[1]), "Head_B", state)  # CLIP side
    torch.save(state, path)
    return path


def build_world(root: Path, weights: Path, n_patches: int = 4) -> World:
    """Patches, scenes and sounds under root; the controlled bridge written into `weights`."""
    from avsearch.encoders.registry import load_encoder

    root.mkdir(parents=True, exist_ok=True)
    patches = []
    for k in range(n_patches):
        patch_picture(k).save(root / f"patch{k}.png")
        patches.append(root / f"patch{k}.png")
    sounds = [write_audio(root / f"sound{k}.wav", seed=k, seconds=1.0) for k in range(n_patches)]
    # Scene s holds patches s and s + 1 (mod n) on two cells of the grid, away from each other.
    cells = [(0, 0), (2, 1), (1, 2), (2, 2), (0, 2)]
    scenes, placements = [], []
    for s in range(n_patches):
        scene, placed = background(s), {}
        for j, k in enumerate((s, (s + 1) % n_patches)):
            col, row = cells[(s + 2 * j) % len(cells)]
            x, y = col * CELL, row * CELL
            scene.paste(Image.open(patches[k]), (x, y))
            placed[k] = (x, y, x + CELL, y + CELL)
        scene.save(root / f"scene{s}.png")
        scenes.append(root / f"scene{s}.png")
        placements.append(placed)
    clip = load_encoder("clip-vit-b-32-openai", ("image",), weights, "cpu")
    clap = load_encoder("clap-630k-fusion", ("audio",), weights, "cpu")
    targets = clip.encode_files("image", patches)
    write_controlled_bridge(weights / "clap_clip.pt", clap.encode_files("audio", sounds), targets)
    return World(weights, patches, sounds, scenes, placements)


def make_detector_weights(folder: Path, name: str = "fasterrcnn_resnet50_fpn_v2", seed: int = 0) -> Path:
    """torchvision's detector `name` with random weights, saved under its published COCO file name."""
    from torchvision.models import detection

    from avsearch.encoders.weights import find_file
    from avsearch.localize.detector import DETECTOR_FILES

    target = folder / find_file(DETECTOR_FILES[name]).name
    if not target.is_file():
        torch.manual_seed(seed)
        model = getattr(detection, name)(weights=None, weights_backbone=None, num_classes=91)
        torch.save(model.state_dict(), target)
    return target


def link_av_weights(source: Path, folder: Path) -> Path:
    """A weights folder of its own (so its clap_clip.pt is ours) holding links to the shared CLIP/CLAP files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("ViT-B-32.pt", "630k-fusion-best.pt", "roberta-base"):
        (folder / name).symlink_to(source / name)
    return folder
