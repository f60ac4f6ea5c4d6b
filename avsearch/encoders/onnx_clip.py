"""CLIP ViT-B/32's text and image towers on ONNX Runtime (one family of encoders/onnx_towers.py).

Query side (no torch): OnnxClipEncoder, ClipEncoder's encode_text / encode_files with tokens and pixels
made in numpy (encoders/clip_inputs.py). Export side (torch loaded): the tower modules and the fixed
inputs their check runs on.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.encoders.onnx_parts import FINGERPRINT, Export, spec_options
from avsearch.encoders.onnx_session import normalized, run, session
from avsearch.errors import ConfigError
from avsearch.modalities import IMAGE, TEXT

TOWERS = (TEXT, IMAGE)


def fingerprint(spec: Any, weights_dir: Path | str | None) -> tuple[str, Path]:
    """ClipEncoder.fingerprint() and the weights file, without loading the model."""
    from avsearch.encoders.identity import fingerprint as make
    from avsearch.encoders.weights import find_file, resolve_weight

    (file_key,) = spec.files
    path = resolve_weight(find_file(file_key).name, weights_dir)
    return make(spec.name, [path], spec_options(spec)), path


def key(spec: Any, weights_dir: Path | str | None) -> str:
    return fingerprint(spec, weights_dir)[0]


def load(spec: Any, tower: str, weights_dir: Path | str | None, folder: Path) -> OnnxClipEncoder:
    fp, weight_path = fingerprint(spec, weights_dir)
    return OnnxClipEncoder(spec, (tower,), fp, weight_path, folder / "model.onnx")


class ClipNumpyPreparer:
    """ClipImagePreparer without torch: one image file -> (3, size, size) uint8 (picklable, model-free)."""

    def __init__(self, size: int, interpolation: str) -> None:
        self.size, self.interpolation = size, interpolation

    def __call__(self, path: Path) -> np.ndarray:
        from avsearch.encoders.clip_inputs import prepare_image
        from avsearch.media.image import load_image

        return prepare_image(load_image(path), self.size, self.interpolation)


class OnnxClipEncoder:
    """CLIP's text or image tower on ONNX Runtime: ClipEncoder's encode_text / encode_files, same vectors."""

    runtime = "onnx"

    def __init__(self, spec: Any, modalities: tuple[str, ...], fingerprint: str, weight_path: Path, graph: Path):
        self.name, self.space, self.dim = spec.name, spec.space, spec.dim
        self.modalities = modalities
        self._spec = spec
        self._fingerprint = fingerprint
        self._weight_path = weight_path
        self.graph = graph
        self._model = None  # no torch model (the cold-start probe reads this)
        self._run = session(graph)
        opts = spec.options
        self._preparer = ClipNumpyPreparer(opts["image_size"], opts["interpolation"])
        self._tokenizer: Any = None
        self.image_batch, self.text_batch = opts["batch_image"], opts["batch_text"]

    def fingerprint(self) -> str:
        return self._fingerprint

    def _require(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ConfigError(f"{self.name} was loaded without its {modality} tower")

    def _forward(self, inputs: np.ndarray, batch: int) -> np.ndarray:
        if not len(inputs):
            return np.zeros((0, self.dim), np.float32)
        return normalized(run(self._run, (inputs,), batch))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        from avsearch.encoders.clip_inputs import ClipTokenizer
        from avsearch.media.text import check_texts

        self._require(TEXT)
        cleaned = check_texts(texts)
        if not cleaned:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._tokenizer is None:
            self._tokenizer = ClipTokenizer(self._spec.options["context_length"])
        return self._forward(self._tokenizer(list(cleaned)), self.text_batch)

    def preparer(self, modality: str) -> ClipNumpyPreparer:
        if modality != IMAGE:
            raise ConfigError(f"{self.name} encodes image files, not {modality}")
        return self._preparer

    def prepare(self, modality: str, path: Path) -> np.ndarray:
        return self.preparer(modality)(path)

    def encode_prepared(self, modality: str, items: Sequence[Any]) -> np.ndarray:
        from avsearch.encoders.clip_inputs import normalize_pixels

        self._require(IMAGE)
        if not len(items):
            return np.zeros((0, self.dim), dtype=np.float32)
        opts = self._spec.options
        pixels = normalize_pixels([np.asarray(i, dtype=np.uint8) for i in items], opts["mean"], opts["std"])
        return self._forward(pixels, self.image_batch)

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        self._require(IMAGE)
        if len(paths) == 1:
            items = [self.prepare(modality, Path(paths[0]))]
        else:
            with ThreadPoolExecutor(max_workers=4) as pool:  # PIL decodes release the GIL
                items = list(pool.map(lambda p: self.prepare(modality, Path(p)), paths))
        return self.encode_prepared(modality, items)


# -- export side (torch is loaded) ------------------------------------------------------------------------


def sample_inputs(encoder: Any, tower: str) -> np.ndarray:
    """Fixed inputs the export and its check run on: tokens of a few texts (one long enough to be
    truncated), or pixels of a few synthetic pictures (normalised as the encoder normalises them)."""
    from avsearch.encoders.clip_inputs import ClipTokenizer, normalize_pixels

    opts = encoder._spec.options
    if tower == TEXT:
        texts = ["a dog barking in the rain", "an orchestra tuning up", "x", " ".join(["long words"] * 60)]
        return ClipTokenizer(opts["context_length"])(texts)
    rng = np.random.default_rng(0)
    size = opts["image_size"]
    items = [rng.integers(0, 256, (3, size, size), dtype=np.uint8) for _ in range(3)]
    gradient = np.broadcast_to(np.linspace(0, 255, size, dtype=np.float32).astype(np.uint8), (3, size, size))
    return normalize_pixels([*items, np.ascontiguousarray(gradient)], opts["mean"], opts["std"])


def exports(encoder: Any, tower: str) -> list[Export]:
    """The tower's one graph: forward(tokens or normalised pixels) -> the un-normalised vectors."""
    import torch

    model = encoder._model

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model.encode_text(x) if tower == TEXT else self.model.encode_image(x)

    return [Export("model.onnx", Tower().eval(), ("input",), sample_inputs(encoder, tower))]


def torch_forward(encoder: Any, tower: str, inputs: np.ndarray) -> np.ndarray:
    """The torch encoder's vectors for the same inputs the graph gets (tokens or normalised pixels)."""
    import torch

    with torch.inference_mode():
        if tower == TEXT:
            out = encoder._model.encode_text(torch.from_numpy(inputs).to(encoder.device))
        else:
            out = encoder._model.encode_image(torch.from_numpy(inputs).to(encoder.device, encoder.dtype))
    return normalized(out.float().cpu().numpy())


def extras(encoder: Any, tower: str) -> dict[str, str]:
    return {FINGERPRINT: encoder.fingerprint() + "\n"}
