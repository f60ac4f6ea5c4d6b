"""CAV-MAE (Gong et al., ICLR 2023) retrieval encoder: audio and images -> 768-d L2-normalised vectors.

Our implementation of the released pretrain model's retrieval path (the release's CAVMAE.forward_feat,
as used by its src/retrieval.py): two ViT-B/16 streams (width 768, 12 heads, MLP 3072, qkv bias,
LayerNorm eps 1e-5). Each modality alone: patches (16 x 16 Conv2d; audio: the (1024, 128) fbank seen as
a 128 x 1024 picture, 8 x 64 patches; images 14 x 14) + its positional table (read from the checkpoint,
never recomputed) + its modality vector -> its 11 modality-specific blocks (their joint LayerNorms
norm1/norm2) -> the one shared block with that modality's LayerNorms (norm1_a/norm2_a or
norm1_v/norm2_v) -> norm_a / norm_v -> mean over tokens -> L2 normalise. Audio <-> image only: CAV-MAE
has no text tower. Inputs: avsearch.encoders.cavmae_features (Kaldi fbank, 224 px crops, long clips).

Checkpoints (the release's pretrain files, e.g. audio_model.21.pth): a plain state dict saved from
DataParallel ('module.' prefixes) holding the encoder and the MAE decoder. Loading: torch.load with
weights_only=True; 'module.' stripped; the decoder's entries (DECODER_ENTRIES) dropped and listed in
the log; everything else loaded strictly. Other layouts (a fine-tuned classifier with mlp_head, a
foreign file) are refused in one line.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avsearch.checkpoints import load_mapped
from avsearch.encoders.cavmae_features import (
    NUM_MEL_BINS,
    TARGET_FRAMES,
    CavMaeAudioPreparer,
    CavMaeImagePreparer,
    scale_pixels,
)
from avsearch.encoders.registry import EncoderSpec
from avsearch.encoders.runtime import as_numpy, batch_size_for, dtype_for, fingerprint, require_tower, run_batched
from avsearch.encoders.weights import find_file, resolve_weight
from avsearch.errors import ConfigError, IncompatibleError
from avsearch.modalities import AUDIO, IMAGE

log = logging.getLogger(__name__)

WIDTH, HEADS, SPECIFIC_DEPTH, PATCH = 768, 12, 11, 16
AUDIO_TOKENS = (NUM_MEL_BINS // PATCH) * (TARGET_FRAMES // PATCH)  # 8 x 64 = 512
IMAGE_TOKENS = (224 // PATCH) ** 2  # 196
# Top-level names of the pretrain model's MAE decoder: the only entries a load drops.
DECODER_ENTRIES = frozenset(
    {
        "decoder_embed",
        "mask_token",
        "decoder_modality_a",
        "decoder_modality_v",
        "decoder_pos_embed_a",
        "decoder_pos_embed_v",
        "decoder_blocks",
        "decoder_norm",
        "decoder_pred_a",
        "decoder_pred_v",
    }
)
PREPROCESS_VERSION = "kaldi-fbank128-1024-first-channel-pcm16;img224-bicubic-imagenet;long=window-mean"


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1 / sqrt(64), as upstream
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    """Pre-norm transformer block with three LayerNorm pairs: joint ("" -> norm1/norm2), audio ("_a")
    and visual ("_v"); the caller says which pair the tokens go through."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        for pair in ("", "_a", "_v"):
            setattr(self, f"norm1{pair}", nn.LayerNorm(dim))
            setattr(self, f"norm2{pair}", nn.LayerNorm(dim))
        self.attn = _Attention(dim, heads)
        self.mlp = _Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor, pair: str = "") -> torch.Tensor:
        x = x + self.attn(getattr(self, f"norm1{pair}")(x))
        return x + self.mlp(getattr(self, f"norm2{pair}")(x))


class _PatchEmbed(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, WIDTH, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, tokens, WIDTH), row-major over the grid


class CavMaeModel(nn.Module):
    """The CAV-MAE encoder; entry names match the release's checkpoints (without the decoder)."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed_a, self.patch_embed_v = _PatchEmbed(1), _PatchEmbed(3)
        self.modality_a = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.modality_v = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.pos_embed_a = nn.Parameter(torch.zeros(1, AUDIO_TOKENS, WIDTH), requires_grad=False)
        self.pos_embed_v = nn.Parameter(torch.zeros(1, IMAGE_TOKENS, WIDTH), requires_grad=False)
        self.blocks_a = nn.ModuleList(_Block(WIDTH, HEADS) for _ in range(SPECIFIC_DEPTH))
        self.blocks_v = nn.ModuleList(_Block(WIDTH, HEADS) for _ in range(SPECIFIC_DEPTH))
        self.blocks_u = nn.ModuleList(_Block(WIDTH, HEADS) for _ in range(12 - SPECIFIC_DEPTH))
        self.norm_a, self.norm_v, self.norm = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)

    def _stream(self, tokens: torch.Tensor, stream: str) -> torch.Tensor:
        tokens = tokens + getattr(self, f"pos_embed_{stream}") + getattr(self, f"modality_{stream}")
        for block in getattr(self, f"blocks_{stream}"):
            tokens = block(tokens)  # modality-specific blocks run on their joint LayerNorms
        for block in self.blocks_u:
            tokens = block(tokens, f"_{stream}")  # the shared block with this modality's LayerNorms
        return getattr(self, f"norm_{stream}")(tokens).mean(dim=1)

    def embed_audio(self, fbank: torch.Tensor) -> torch.Tensor:
        """Normalised fbank (B, 1024, 128) -> pooled audio features (B, 768), not yet L2-normalised."""
        picture = fbank.transpose(1, 2).unsqueeze(1)  # (B, 1, 128 mel, 1024 frames)
        return self._stream(self.patch_embed_a(picture), "a")

    def embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised pixels (B, 3, 224, 224) -> pooled image features (B, 768)."""
        return self._stream(self.patch_embed_v(pixels), "v")


def _group(keys: Sequence[str]) -> str:
    counts = Counter(k.split(".", 1)[0] for k in keys)
    return ", ".join(f"{name} ({n})" for name, n in sorted(counts.items()))


def read_cavmae_state(path: Path) -> dict[str, torch.Tensor]:
    """The encoder's entries of a CAV-MAE pretrain checkpoint, 'module.' stripped, decoder dropped.

    Raises InputError (unreadable file), IncompatibleError (code in the pickle, another layout).
    """
    obj = load_mapped(path, "CAV-MAE")
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise IncompatibleError(f"{path}: not a CAV-MAE checkpoint (expected a state dict of tensors)")
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}
    if any(k.startswith("mlp_head.") for k in state):
        raise IncompatibleError(
            f"{path}: a fine-tuned CAV-MAE classifier (it has mlp_head.*), not a pretrained one; "
            "use a pretrain checkpoint such as audio_model.21.pth (CAV-MAE-Scale++)"
        )
    decoder = sorted(k for k in state if k.split(".", 1)[0] in DECODER_ENTRIES)
    if decoder:
        log.info("%s: dropped %d MAE decoder entries (unused for embeddings): %s", path, len(decoder), _group(decoder))
    else:
        log.info("%s: no MAE decoder entries (an encoder-only file)", path)
    return {k: v for k, v in state.items() if k.split(".", 1)[0] not in DECODER_ENTRIES}


def check_layout(state: dict[str, torch.Tensor], model: nn.Module, path: Path) -> None:
    """Refuse in one line a state that does not fit the encoder entry for entry (names and shapes)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    problems = []
    if missing:
        problems.append(f"{len(missing)} encoder entries missing ({', '.join(missing[:3])}, ...)")
    if unexpected:
        problems.append(f"{len(unexpected)} unknown entries ({', '.join(unexpected[:3])}, ...)")
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} shapes differ ({k}: {tuple(state[k].shape)}, expected {expected[k]})")
    if problems:
        raise IncompatibleError(f"{path}: not a CAV-MAE pretrain checkpoint: {'; '.join(problems)}")


def load_cavmae_model(path: Path, modalities: Sequence[str], device: torch.device) -> CavMaeModel:
    """Build the encoder from a checkpoint (strict, positional tables from the file) for `modalities`."""
    state = read_cavmae_state(path)
    with torch.device("meta"):  # no random initialisation: every entry comes from the file
        model = CavMaeModel()
    check_layout(state, model, path)
    model.load_state_dict(state, strict=True, assign=True)
    for stream, modality in (("a", AUDIO), ("v", IMAGE)):
        if modality not in modalities:  # free the tower no command asked for
            for name in (f"patch_embed_{stream}", f"blocks_{stream}", f"norm_{stream}"):
                setattr(model, name, None)
    return model.to(device=device, dtype=dtype_for(device)).eval().requires_grad_(False)


class CavMaeEncoder:
    """Frozen CAV-MAE encoder of the "cavmae" space (see avsearch.encoders.base.Encoder)."""

    def __init__(
        self, spec: EncoderSpec, model: CavMaeModel, modalities: tuple[str, ...], device: torch.device, path: Path
    ) -> None:
        opts = spec.options
        self.name, self.space, self.dim = spec.name, spec.space, spec.dim
        self.modalities = modalities
        self.device, self.dtype = device, dtype_for(device)
        self.max_windows = int(opts.get("max_windows", 6))
        self.audio_batch = batch_size_for(device, int(opts.get("batch_audio", 4)))
        self.image_batch = batch_size_for(device, int(opts.get("batch_image", 32)))
        self._spec, self._model, self._weight_path = spec, model, path
        self._preparers: dict[str, Any] = {AUDIO: CavMaeAudioPreparer(self.max_windows), IMAGE: CavMaeImagePreparer()}

    def preparer(self, modality: str) -> CavMaeAudioPreparer | CavMaeImagePreparer:
        """The model-free decode step (picklable). Audio: file -> (W, 1024, 128) float32 normalised
        fbank windows; image: file -> (3, 224, 224) uint8 crop."""
        if modality not in (AUDIO, IMAGE):
            raise ConfigError(f"{self.name} encodes audio and image files, not {modality}")
        return self._preparers[modality]

    def prepare(self, modality: str, path: Path) -> torch.Tensor:
        """Decode one file into what encode_prepared takes; DecodeError names a bad file."""
        return self.preparer(modality)(path)

    @torch.inference_mode()
    def encode_fbank(self, fbank: torch.Tensor) -> np.ndarray:
        """Bare forward: normalised fbank windows (N, 1024, 128) -> (N, 768) float32, rows normalised."""
        require_tower(self, AUDIO)

        def forward(batch: torch.Tensor) -> torch.Tensor:
            return self._model.embed_audio(batch.to(self.device, self.dtype, non_blocking=True))

        return as_numpy(run_batched(forward, torch.as_tensor(fbank), self.audio_batch), self.dim)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Bare forward: normalised pixels (N, 3, 224, 224) -> (N, 768) float32, rows normalised."""
        require_tower(self, IMAGE)

        def forward(batch: torch.Tensor) -> torch.Tensor:
            return self._model.embed_image(batch.to(self.device, self.dtype, non_blocking=True))

        return as_numpy(run_batched(forward, pixels, self.image_batch), self.dim)

    def encode_prepared(self, modality: str, items: Sequence[torch.Tensor]) -> np.ndarray:
        """What the preparer returned -> (len(items), 768) float32, rows L2-normalised.

        Audio: each file's window vectors averaged and re-normalised (one window up to 10.24 s).
        Images: uint8 crops scaled and normalised here, per batch, on the model's device.
        """
        require_tower(self, modality)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        if modality == IMAGE:
            return self.encode_pixels(scale_pixels(torch.stack(list(items)).to(self.device)))
        counts = [int(w.shape[0]) for w in items]
        per_window = self.encode_fbank(torch.cat(list(items)))
        pooled = np.stack([g.mean(axis=0) for g in np.split(per_window, np.cumsum(counts)[:-1])])
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        """Decode + encode files -> (N, 768) float32; DecodeError names the first bad file."""
        require_tower(self, modality)
        with ThreadPoolExecutor(max_workers=2) as pool:  # soundfile, soxr, PIL release the GIL
            items = list(pool.map(lambda p: self.prepare(modality, Path(p)), paths))
        return self.encode_prepared(modality, items)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Not offered: CAV-MAE has no text tower."""
        raise IncompatibleError(f"{self.name} has no text tower (CAV-MAE is audio-image only): text queries use C-MCR")

    def fingerprint(self) -> str:
        opts = {k: v for k, v in self._spec.options.items() if not k.startswith("batch")}
        opts["max_windows"] = self.max_windows
        opts["preprocess"] = PREPROCESS_VERSION
        return fingerprint(self.name, [self._weight_path], opts)


def load_cavmae_encoder(
    spec: EncoderSpec, modalities: tuple[str, ...], weights_dir: Path | str | None, device: torch.device
) -> CavMaeEncoder:
    """Registry factory: resolve the checkpoint named by the spec and build the encoder for `modalities`."""
    (file_key,) = spec.files
    path = resolve_weight(find_file(file_key).name, weights_dir)
    model = load_cavmae_model(path, modalities, device)
    log.info("CAV-MAE loaded from %s (%s) on %s", path, ", ".join(modalities), device)
    return CavMaeEncoder(spec, model, modalities, device, path)
