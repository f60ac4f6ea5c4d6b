"""Write a small media folder for trying avsearch without a collection of one's own (used by demo.sh).

OUT/media/: pictures (PNG), sounds (WAV tones and noises) and 3D shapes (PLY point clouds), plus OUT/dog.wav
and OUT/model.ply as queries. Generated, so the results only show that the commands run; with real
weights the ranking follows the generated content (colours, pitches, shapes), not real-world meaning.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

RATE = 48_000


def picture(path: Path, colour: tuple[int, int, int], shape: str) -> None:
    img = Image.new("RGB", (256, 256), (235, 235, 225))
    draw = ImageDraw.Draw(img)
    box = (48, 48, 208, 208)
    draw.ellipse(box, fill=colour) if shape == "circle" else draw.rectangle(box, fill=colour)
    img.save(path)


def sound(path: Path, pitch: float | None, seconds: float, seed: int) -> None:
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * np.pi * pitch * t) if pitch else 0.2 * rng.standard_normal(t.size)
    sf.write(path, (wave * np.hanning(t.size) ** 0.1).astype(np.float32), RATE)


def shape(path: Path, kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(2048, 3))
    if kind == "sphere":
        pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    else:  # a box-like cloud
        pts = np.clip(pts, -1, 1) * (1.0, 0.6, 0.3)
    header = f"ply\nformat ascii 1.0\nelement vertex {len(pts)}\n" + "".join(f"property float {c}\n" for c in "xyz")
    path.write_text(header + "end_header\n" + "\n".join(f"{x:.5f} {y:.5f} {z:.5f}" for x, y, z in pts) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    out = parser.parse_args().out
    media = out / "media"
    for sub in ("pictures", "sounds", "shapes"):
        (media / sub).mkdir(parents=True, exist_ok=True)
    colours = {"red": (200, 30, 30), "green": (30, 160, 60), "blue": (30, 60, 200), "yellow": (230, 200, 30)}
    for i, (name, rgb) in enumerate(colours.items()):
        picture(media / "pictures" / f"{name}_{'circle' if i % 2 else 'square'}.png", rgb, "circle" if i % 2 else "")
    for i, pitch in enumerate((220.0, 440.0, 880.0, None)):
        sound(media / "sounds" / (f"tone_{int(pitch)}hz.wav" if pitch else "noise.wav"), pitch, 2.0, i)
    shape(media / "shapes" / "sphere.ply", "sphere", 0)
    shape(media / "shapes" / "box.ply", "box", 1)
    sound(out / "dog.wav", 660.0, 1.5, 9)
    shape(out / "model.ply", "box", 7)
    print(f"wrote sample media to {media}, queries {out / 'dog.wav'} and {out / 'model.ply'}")


if __name__ == "__main__":
    main()
