"""Test-only child process: decode files with avsearch's readers and the encoders' model-free preparers
(the real CLIP, CAV-MAE and ULIP image resizes, CLAP's and CAV-MAE's audio decoding) and print one JSON
line per (file, decoder): the outcome, the one-line message and how far that decoder raised the peak RSS.

Run as `python -m tests.media.decode_probe KIND:PATH...`; tests/media/test_size_bounds.py runs it under
a memory watchdog, so a file that makes a decoder allocate gigabytes kills this process, not the machine.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _status_mb(field: str) -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM starts again from the current RSS


def _decoders() -> dict[str, list[tuple[str, Callable[[Path], Any]]]]:
    from avsearch.encoders import ulip
    from avsearch.encoders.cavmae_features import CavMaeImagePreparer, load_first_channel
    from avsearch.encoders.clip import ClipImagePreparer
    from avsearch.media.audio import load_audio
    from avsearch.media.image import load_image
    from avsearch.media.pointcloud import load_pointcloud

    clip = ClipImagePreparer(224, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711), "bicubic")
    return {
        "crop": [("localize_crop", _thin_crop)],
        "image": [
            ("load_image", load_image),
            ("clip", clip),
            ("cavmae", CavMaeImagePreparer()),
            ("ulip", ulip._prepare_image),
        ],
        "audio": [("load_audio", lambda p: load_audio(p, 48_000)), ("cavmae", load_first_channel)],
        "audio48": [("load_audio", lambda p: load_audio(p, 48_000))],
        "pointcloud": [("load_pointcloud", load_pointcloud)],
    }


def _thin_crop(path: Path) -> Any:
    """A 1-pixel-wide, full-height box of the picture through localisation's crop step (a user's --boxes
    file may hold any box; the crop then takes CLIP's shorter-side resize)."""
    from types import SimpleNamespace

    from avsearch.encoders.clip import _clip_transform
    from avsearch.localize.crops import CropEmbedder
    from avsearch.localize.proposals import Box
    from avsearch.media.image import load_image

    picture = load_image(path)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    encoder = SimpleNamespace(name="clip", preprocess=_clip_transform(224, mean, std, "bicubic"))
    return CropEmbedder(encoder).prepare(picture, Box(0, 0, 1, picture.size[1], "file"))


def _warm_up(decoders: dict[str, list[tuple[str, Callable[[Path], Any]]]]) -> None:
    """Run every decoder once on a small good file: lazy imports (torchvision, librosa, trimesh) load
    here, outside the measure."""
    import numpy as np
    import soundfile as sf
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        image, sound, cloud = Path(folder, "ok.png"), Path(folder, "ok.wav"), Path(folder, "ok.npy")
        Image.new("RGB", (64, 48), (20, 120, 200)).save(image)
        sf.write(sound, 0.3 * np.sin(np.arange(8000) / 5.0), 16_000)
        np.save(cloud, np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32))
        for kind, path in (("image", image), ("crop", image), ("audio", sound), ("pointcloud", cloud)):
            for _, decode in decoders[kind]:
                decode(path)


def main(args: list[str]) -> None:
    from avsearch.errors import DecodeError

    decoders = _decoders()
    _warm_up(decoders)
    print(json.dumps({"baseline_mb": _status_mb("VmRSS")}), flush=True)
    for arg in args:
        kind, path = arg.split(":", 1)
        for name, decode in decoders[kind]:
            print(json.dumps({"start": path, "decoder": name}), flush=True)
            _reset_peak()
            before = _status_mb("VmRSS")
            try:
                decode(Path(path))
                outcome, message = "decoded", ""
            except DecodeError as exc:
                outcome, message = "DecodeError", str(exc)
            except Exception as exc:  # a crash of the decoder: the test reports it
                outcome, message = type(exc).__name__, str(exc)
            growth = _status_mb("VmHWM") - before
            row = {"path": path, "decoder": name, "outcome": outcome, "message": message, "growth_mb": growth}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
