"""Test-only: generate folders of tiny media files (PNG/JPEG pictures, WAV tones) plus awkward cases."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image


def write_image(path: Path, seed: int, size: int = 24) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=3)
    pixels = np.clip(base + rng.integers(-40, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    return path


def write_audio(path: Path, seed: int, seconds: float = 0.25, rate: int = 16000) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(os.fsencode(path), wave.astype(np.float32), rate, format="WAV")
    return path


def write_cloud(path: Path, seed: int) -> Path:
    """A .npy point cloud: 1,500 points on an ellipsoid whose axes depend on the seed."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(1500, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, (v * rng.uniform(0.5, 2.0, size=3)).astype(np.float32))
    return path


def make_media(root: Path, images: int, audio: int, seed: int = 0) -> dict[str, list[Path]]:
    """A mixed folder: pictures and sounds in sub-folders, corrupt files, non-media and a symlink loop.

    Returns {"image": [...], "audio": [...], "corrupt": [...], "other": [...]} of the paths written.
    """
    made: dict[str, list[Path]] = {"image": [], "audio": [], "corrupt": [], "other": []}
    for i in range(images):
        ext = ".jpg" if i % 3 == 0 else ".png"
        name = f"pic {i:03d}{ext}" if i % 7 else f"it's pic #{i:03d} ü{ext}"  # awkward names too
        made["image"].append(write_image(root / f"pictures/set{i % 3}" / name, seed + i))
    for i in range(audio):
        made["audio"].append(write_audio(root / f"sounds/clip_{i:03d}.wav", seed + i))
    corrupt = root / "broken"
    corrupt.mkdir(parents=True, exist_ok=True)
    good_png = (root / "pictures/set1").glob("*.png").__next__().read_bytes()
    (corrupt / "truncated.png").write_bytes(good_png[:40])  # PNG signature, then nothing decodable
    (corrupt / "garbage.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(64))
    (corrupt / "silent.wav").write_bytes(b"")  # empty, with a media name: failed, with a reason
    sf.write(corrupt / "all_zero.wav", np.zeros(4000, np.float32), 16000)  # decodes, but silent
    made["corrupt"] += [
        corrupt / "truncated.png",
        corrupt / "garbage.wav",
        corrupt / "all_zero.wav",
        corrupt / "silent.wav",
    ]
    (root / "notes.txt").write_text("not media\n")
    made["other"] += [root / "notes.txt"]
    (root / "pictures/loop").symlink_to(root, target_is_directory=True)  # a symlink loop
    return made
