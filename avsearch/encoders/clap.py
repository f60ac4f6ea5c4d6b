"""LAION-CLAP fusion model (630k-fusion-best.pt): audio and text -> 512-d L2-normalised vectors.

Audio pipeline (deterministic: the same file gives a bit-identical vector on every run):
  file -> mono 48 kHz (avsearch.media.audio.load_audio) -> int16 round trip (as laion_clap)
  -> 10 s windows (avsearch.media.audio.make_windows: repeat-padded when short, evenly spaced
  windows covering the clip when long, at most `max_windows`) -> log-mel (clap_features)
  -> laion_clap CLAP.get_audio_embedding per window (each L2-normalised)
  -> pooling: the mean of a file's window vectors, L2-normalised again.
laion_clap's own fusion path picks random crops for clips over 10 s; making the windows here
means the model only ever sees exact 10 s windows, for which it is deterministic.
Bit-identity holds for the same file encoded in the same batch layout (CPU GEMM kernels may round
differently for other batch sizes, well below 1e-6).
Text: RoBERTa tokenizer, 77 tokens (truncated), CLAP.get_text_embedding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsearch.encoders.base import AUDIO, TEXT
from avsearch.encoders.clap_features import fusion_inputs, quantize_int16
from avsearch.encoders.clap_model import build_clap, load_tokenizer
from avsearch.encoders.registry import EncoderSpec
from avsearch.encoders.runtime import (
    as_numpy,
    batch_size_for,
    chunks,
    dtype_for,
    fingerprint,
    require_tower,
    run_batched,
)
from avsearch.encoders.weights import find_file, resolve_weight
from avsearch.errors import ConfigError
from avsearch.media.audio import load_audio, make_windows
from avsearch.media.text import check_texts

log = logging.getLogger(__name__)


class ClapEncoder:
    """Frozen CLAP encoder of the "clap" space (see avsearch.encoders.base.Encoder)."""

    def __init__(
        self,
        spec: EncoderSpec,
        model: torch.nn.Module,
        model_cfg: dict[str, Any],
        tokenizer: Any,
        modalities: tuple[str, ...],
        device: torch.device,
        weight_paths: list[Path],
    ) -> None:
        opts = spec.options
        self.name = spec.name
        self.space = spec.space
        self.modalities = modalities
        self.dim = spec.dim
        self.device = device
        self.dtype = dtype_for(device)
        self.audio_cfg = dict(model_cfg["audio_cfg"])
        self.sample_rate = int(opts["sample_rate"])
        self.window_samples = int(opts["window_samples"])
        self.max_windows = int(opts["max_windows"])
        self.context_length = int(opts["context_length"])
        self.audio_batch = batch_size_for(device, opts["batch_audio"])
        self.text_batch = batch_size_for(device, opts["batch_text"])
        self._spec = spec
        self._model = model
        self._tokenizer = tokenizer
        self._weight_paths = weight_paths

    # -- audio -----------------------------------------------------------------------------------
    def prepare(self, modality: str, path: Path) -> np.ndarray:
        """Decode one file into its 10 s windows: (W, 480000) float32. Raises DecodeError naming it."""
        if modality != AUDIO:
            raise ConfigError(f"{self.name} encodes audio files, not {modality}")
        wave = quantize_int16(load_audio(path, self.sample_rate))
        return make_windows(wave, self.window_samples, self.max_windows)

    @torch.inference_mode()
    def encode_windows(self, windows: np.ndarray | torch.Tensor) -> np.ndarray:
        """Bare model forward on windows (W, 480000) float32 -> (W, 512) float32, rows normalised."""
        require_tower(self, AUDIO)
        windows = torch.as_tensor(windows, dtype=torch.float32)

        def forward(part: torch.Tensor) -> torch.Tensor:
            inputs = fusion_inputs(part.to(self.device), self.audio_cfg)
            for item in inputs:
                item["mel_fusion"] = item["mel_fusion"].to(self.dtype)
            return self._model.get_audio_embedding(inputs)

        return as_numpy(run_batched(forward, windows, self.audio_batch), self.dim)

    def encode_prepared(self, modality: str, items: Sequence[np.ndarray]) -> np.ndarray:
        """Encode prepared files [(W_i, 480000)] -> (N, 512): mean of window vectors, re-normalised."""
        require_tower(self, AUDIO)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        counts = [w.shape[0] for w in items]
        per_window = self.encode_windows(np.concatenate(items))
        pooled = np.stack([g.mean(axis=0) for g in np.split(per_window, np.cumsum(counts)[:-1])]).astype(np.float32)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        """Decode + encode audio files -> (N, 512) float32; DecodeError names the first bad file."""
        require_tower(self, AUDIO)
        with ThreadPoolExecutor(max_workers=2) as pool:  # soundfile/soxr release the GIL
            items = list(pool.map(lambda p: self.prepare(modality, Path(p)), paths))
        return self.encode_prepared(modality, items)

    # -- text ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, 512) float32 normalised; RoBERTa tokens truncated to 77; empty -> InputError."""
        require_tower(self, TEXT)
        cleaned = check_texts(texts)
        outputs = []
        for part in chunks(cleaned, self.text_batch):
            tokens = self._tokenizer(
                list(part),
                padding="max_length",
                truncation=True,
                max_length=self.context_length,
                return_tensors="pt",
            )
            data = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
            emb = self._model.get_text_embedding(data)
            outputs.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
        return as_numpy(torch.cat(outputs) if outputs else torch.empty(0), self.dim)

    def fingerprint(self) -> str:
        opts = {k: v for k, v in self._spec.options.items() if not k.startswith("batch")}
        opts["pooling"] = "mean-of-normalised-windows-v1"
        return fingerprint(self.name, self._weight_paths, opts)


def _drop_unused_towers(model: torch.nn.Module, modalities: Sequence[str]) -> None:
    if AUDIO not in modalities:
        model.audio_branch = None
        model.audio_projection = None
    if TEXT not in modalities:
        model.text_branch = None
        model.text_projection = None
    # The *_transform MLPs are used only in training (forward()), never for embeddings.
    model.audio_transform = None
    model.text_transform = None


def load_clap_encoder(
    spec: EncoderSpec,
    modalities: tuple[str, ...],
    weights_dir: Path | str | None,
    device: torch.device,
) -> ClapEncoder:
    """Registry factory: resolve checkpoint + roberta-base files, build the model offline."""
    names = {key: find_file(key).name for key in spec.files}
    paths = {key: resolve_weight(name, weights_dir) for key, name in names.items()}
    model, model_cfg = build_clap(paths["clap"], paths["roberta-config"], spec.options)
    _drop_unused_towers(model, modalities)
    model = model.to(device=device, dtype=dtype_for(device))
    tokenizer = load_tokenizer(paths["roberta-vocab"]) if TEXT in modalities else None
    log.info("CLAP %s loaded from %s on %s", spec.options["amodel"], paths["clap"], device)
    return ClapEncoder(spec, model, model_cfg, tokenizer, modalities, device, [paths["clap"]])
