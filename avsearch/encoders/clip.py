"""CLIP ViT-B/32 (OpenAI weights) through open_clip: images and text -> 512-d L2-normalised vectors.

Weights: the published OpenAI file ViT-B-32.pt (a TorchScript archive, loaded by open_clip's
`load_openai_model`), or a plain/safetensors state dict such as the hub's open_clip_model.safetensors
(loaded by `open_clip.create_model(..., pretrained=<file>)`); see avsearch.encoders.weights for where
the file is looked for. Preprocessing (bicubic shortest-side resize to 224, centre crop, CLIP
mean/std) and the 77-token context come from configs/encoders.toml.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from avsearch.checkpoints import is_refusal, loading, refusal
from avsearch.encoders.causal_mask import is_causal
from avsearch.encoders.registry import EncoderSpec
from avsearch.encoders.runtime import as_numpy, batch_size_for, dtype_for, fingerprint, require_tower, run_batched
from avsearch.encoders.upstream import submodule
from avsearch.encoders.weights import find_file, resolve_weight
from avsearch.errors import ConfigError, IncompatibleError
from avsearch.media.image import load_image
from avsearch.media.text import check_texts
from avsearch.modalities import IMAGE, TEXT

log = logging.getLogger(__name__)


def _is_torchscript(path: Path) -> bool:
    """OpenAI's published .pt files are TorchScript archives (a zip holding code/ and constants.pkl)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def _open_clip(name: str) -> ModuleType:
    """open_clip's submodule `name`, without open_clip/__init__.py's other imports (encoders/upstream.py)."""
    return submodule("open_clip", name)


def _build_model(spec: EncoderSpec, path: Path, device: torch.device) -> torch.nn.Module:
    precision = "fp16" if device.type == "cuda" else "fp32"
    try:
        with loading():
            if _is_torchscript(path):
                # The real open_clip loader for OpenAI's archives (rebuilds a non-JIT model from them).
                model = _open_clip("openai").load_openai_model(str(path), precision=precision, device=device)
            else:
                model = _open_clip("factory").create_model(
                    spec.options["arch"], pretrained=str(path), precision=precision, device=device
                )
    except (pickle.UnpicklingError, RuntimeError, KeyError, ValueError, EOFError) as exc:
        if is_refusal(exc):
            raise refusal(path, exc) from None
        raise IncompatibleError(f"{path}: not a CLIP ViT-B/32 checkpoint ({exc})") from exc
    return model.eval()


def _drop_unused_towers(model: torch.nn.Module, modalities: Sequence[str]) -> None:
    """Free the tower no command asked for (the checkpoint holds both)."""
    if IMAGE not in modalities:
        model.visual = None
    if TEXT not in modalities:
        for attr in ("transformer", "token_embedding", "ln_final"):
            setattr(model, attr, None)
        for attr in ("positional_embedding", "text_projection"):
            setattr(model, attr, None)


def _clip_transform(size: int, mean: tuple, std: tuple, interpolation: str) -> Any:
    """open_clip's evaluation transform: resize the short side, centre crop, RGB, to tensor, normalise."""
    return _open_clip("transform").image_transform(
        size, is_train=False, mean=mean, std=std, interpolation=interpolation, resize_mode="shortest"
    )


def text_pool_positions(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Per row of `tokens` (N, 77), the position whose output the text tower pools (the end-of-text token).

    open_clip's CLIP pools the EOT token: 'argmax' (OpenAI's tokenizer gives EOT the highest id, padding
    is 0) or 'eos' (the first `text_eos_id`). Other pooling ('last', 'first', none) reads a position
    that is not the EOT token: all rows then count as full length.
    """
    pool = getattr(model, "text_pool_type", None)
    if pool == "argmax":
        return tokens.argmax(dim=-1)
    if pool == "eos" and getattr(model, "text_eos_id", None) is not None:
        return (tokens == model.text_eos_id).int().argmax(dim=-1)
    return torch.full(tokens.shape[:1], tokens.shape[-1] - 1, dtype=torch.long, device=tokens.device)


def encode_text_tokens(model: torch.nn.Module, tokens: torch.Tensor, *, full_context: bool = False) -> torch.Tensor:
    """open_clip `CLIP.encode_text(tokens)` (unnormalised), run only up to the batch's last EOT token.

    CLIP's text tower is causal (its attention mask hides every later position) and its output is the
    EOT token's: padding after a row's EOT never reaches that row's output. So the batch is cut after its
    furthest EOT (L = max position + 1): token ids, positional embedding and attention mask are sliced to
    L and upstream's own steps run unchanged (transformer, ln_final, pooling, projection). The pooled
    vectors equal the 77-token ones up to float rounding (matmuls of another shape), for about L/77 of
    the work. A model this does not hold for (no causal mask, pooling another position, another class)
    gets upstream's `encode_text`, as does `full_context=True`.
    """
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")
    if full_context or not all(getattr(model, name, None) is not None for name in needed):
        return model.encode_text(tokens)
    context = tokens.shape[-1]
    length = int(text_pool_positions(model, tokens).max()) + 1
    if length >= context or not is_causal(model.attn_mask, context):
        return model.encode_text(tokens)
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    eos = getattr(model, "text_eos_id", None)
    x = _open_clip("transformer").text_global_pool(x, tokens, model.text_pool_type, eos_token_id=eos)
    projection = model.text_projection
    if projection is not None:
        x = projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
    return x


class ClipImagePreparer:
    """Decode one image file into CLIP's input before scaling: (3, size, size) uint8.

    The transform's geometric steps run here (in decode workers, threads or processes); ToTensor +
    Normalize wait for the batch (ClipEncoder.encode_prepared). Holds no model, so it pickles small.
    """

    def __init__(self, size: int, mean: tuple, std: tuple, interpolation: str) -> None:
        self.args = (size, mean, std, interpolation)
        self._steps: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"args": self.args, "_steps": None}

    def __call__(self, path: Path) -> torch.Tensor:
        return self.from_image(load_image(path))

    @property
    def frame_side(self) -> int:
        """The shorter side the transform resizes to: a video's frames are decoded at it (PyAV's scaler),
        then the transform's resize has nothing left to do (PIL resizing a 720p frame costs more than decoding it)."""
        return int(self.args[0])

    def from_image(self, image: Any) -> torch.Tensor:
        """An upright 8-bit RGB PIL image (a decoded file, or a video's frame) -> (3, size, size) uint8."""
        if self._steps is None:  # built on first use, in the process that decodes
            from torchvision.transforms import Compose

            steps = _clip_transform(*self.args).transforms
            if [type(t).__name__ for t in steps[-2:]] != ["MaybeToTensor", "Normalize"]:
                raise IncompatibleError(f"open_clip's image transform changed: {steps}")
            self._steps = Compose(steps[:-2])
        image = self._steps(image)
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


class ClipEncoder:
    """Frozen CLIP encoder of the "clip" space (see avsearch.encoders.base.Encoder)."""

    def __init__(
        self,
        spec: EncoderSpec,
        model: torch.nn.Module,
        modalities: tuple[str, ...],
        device: torch.device,
        weight_path: Path,
    ) -> None:
        opts = spec.options
        self.name = spec.name
        self.space = spec.space
        self.modalities = modalities
        self.dim = spec.dim
        self.device = device
        self.dtype = dtype_for(device)
        self._spec = spec
        self._model = model
        self._weight_path = weight_path
        transform_args = (opts["image_size"], tuple(opts["mean"]), tuple(opts["std"]), opts["interpolation"])
        self.preprocess = _clip_transform(*transform_args)  # the whole upstream transform, for reference
        self._normalize = self.preprocess.transforms[-1]  # the transform's own Normalize, applied per batch
        self._image_preparer = ClipImagePreparer(*transform_args)
        self.tokenizer = _open_clip("factory").get_tokenizer(opts["arch"], context_length=opts["context_length"])
        self.image_batch = batch_size_for(device, opts["batch_image"])
        self.text_batch = batch_size_for(device, opts["batch_text"])

    # -- images ----------------------------------------------------------------------------------
    def preparer(self, modality: str) -> ClipImagePreparer:
        """The model-free decode step for `modality` (picklable: decode worker processes run it)."""
        if modality != IMAGE:
            raise ConfigError(f"{self.name} encodes image files, not {modality}")
        return self._image_preparer

    def prepare(self, modality: str, path: Path) -> torch.Tensor:
        """Decode, resize and crop one file: (3, 224, 224) uint8. Raises DecodeError naming it."""
        return self.preparer(modality)(path)

    @torch.inference_mode()
    def encode_prepared(self, modality: str, items: Sequence[torch.Tensor]) -> np.ndarray:
        """Encode prepared images [(3, 224, 224) uint8] -> (N, 512) float32, rows L2-normalised.

        The uint8 -> float scaling and normalisation run here, per batch and on the model's device: the
        same arithmetic as the transform's ToTensor + Normalize, on a quarter of the bytes per image.
        """
        require_tower(self, IMAGE)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        pixels = torch.stack(list(items)).to(self.device, non_blocking=True)
        return self.encode_pixels(self._normalize(pixels.float().div(255)))

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Bare model forward on normalised pixels (N, 3, 224, 224) -> (N, 512) float32 normalised."""
        require_tower(self, IMAGE)

        def forward(batch: torch.Tensor) -> torch.Tensor:
            return self._model.encode_image(batch.to(self.device, self.dtype, non_blocking=True))

        return as_numpy(run_batched(forward, pixels, self.image_batch), self.dim)

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        """Decode + encode image files -> (N, 512) float32; DecodeError names the first bad file."""
        require_tower(self, IMAGE)
        with ThreadPoolExecutor(max_workers=4) as pool:  # PIL decodes release the GIL
            items = list(pool.map(lambda p: self.prepare(modality, Path(p)), paths))
        return self.encode_prepared(modality, items)

    # -- text ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str], *, full_context: bool = False) -> np.ndarray:
        """Texts -> (N, 512) float32 normalised; truncated to 77 tokens; empty text is an InputError.

        The text tower runs only up to each batch's furthest end-of-text token (`encode_text_tokens`),
        and texts are batched shortest first (output in input order), so a batch of short prompts costs
        a fraction of the 77-token forward. `full_context=True` runs upstream's 77-token forward in
        input order instead (the reference the tests and benchmarks/clip_text.py compare with).
        """
        require_tower(self, TEXT)
        cleaned = check_texts(texts)
        if not cleaned:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self.tokenizer(cleaned)
        if full_context:
            order = None
        else:  # similar lengths share a batch, so each batch is cut short as far as it can be
            order = torch.argsort(text_pool_positions(self._model, tokens), stable=True)
            tokens = tokens[order]

        def forward(batch: torch.Tensor) -> torch.Tensor:
            return encode_text_tokens(self._model, batch.to(self.device), full_context=full_context)

        out = run_batched(forward, tokens, self.text_batch)
        if order is not None:
            out = out[torch.argsort(order)]
        return as_numpy(out, self.dim)

    def fingerprint(self) -> str:
        opts = {k: v for k, v in self._spec.options.items() if not k.startswith("batch")}
        return fingerprint(self.name, [self._weight_path], opts)


def load_clip_encoder(
    spec: EncoderSpec,
    modalities: tuple[str, ...],
    weights_dir: Path | str | None,
    device: torch.device,
) -> ClipEncoder:
    """Registry factory: resolve the CLIP checkpoint and build the encoder for `modalities`."""
    (file_key,) = spec.files
    path = resolve_weight(find_file(file_key).name, weights_dir)
    model = _build_model(spec, path, device)
    _drop_unused_towers(model, modalities)
    log.info("CLIP %s loaded from %s on %s", spec.options["arch"], path, device)
    return ClipEncoder(spec, model, modalities, device, path)
