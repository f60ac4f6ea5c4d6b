"""LAION-CLAP fusion model (630k-fusion-best.pt): audio and text -> 512-d L2-normalised vectors.

Audio pipeline (deterministic: the same file gives a bit-identical vector on every run):
  file -> mono 48 kHz (avsearch.media.audio.load_audio) -> int16 round trip (as laion_clap), then by
  the `long_clip` setting of configs/encoders.toml (LongClip):
  - "fusion" (default): laion_clap's own fusion input (clap_features.clip_fusion_input). A clip up to
    10 s is repeat-padded to 10 s; a longer clip gives the model what the fusion checkpoint was trained
    on: its whole mel shrunk to 10 s plus three 10 s crops, at fixed evenly spaced starts where
    upstream draws them at random. One forward per file, whatever its length.
  - "window-mean": evenly spaced 10 s windows (avsearch.media.audio.make_windows, at most
    `max_windows`), each embedded as a short clip, the window vectors averaged and re-normalised.
  Clips up to 10 s give the same vector in both modes.
Bit-identity holds for the same file encoded in the same batch layout (CPU GEMM kernels may round
differently for other batch sizes, well below 1e-6).
Text: the RoBERTa tokenizer called exactly as laion_clap's CLAP_Module.tokenizer (text unchanged, no
whitespace clean-up; 77 tokens, truncated, padded), then CLAP.get_text_embedding.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsearch.encoders.clap_features import (
    FUSION_CHUNK_RULE,
    FusionInput,
    clip_fusion_input,
    fusion_inputs,
    quantize_int16,
)
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
from avsearch.media.audio import audio_blocks, load_audio, make_windows
from avsearch.media.text import check_texts
from avsearch.modalities import AUDIO, TEXT

log = logging.getLogger(__name__)


class LongClip(StrEnum):
    """How clips over 10 s are embedded (`long_clip` in configs/encoders.toml)."""

    FUSION = "fusion"  # the fusion checkpoint's own input: global mel + 3 fixed crops, one forward
    WINDOW_MEAN = "window-mean"  # mean of evenly spaced 10 s window vectors (the earlier behaviour)

    @classmethod
    def parse(cls, value: Any) -> LongClip:
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(repr(m.value) for m in cls)
            raise ConfigError(f"encoders.toml: long_clip = {value!r} is not one of {valid}") from None


@dataclasses.dataclass(frozen=True)
class ClapAudioPreparer:
    """Decode one audio file into CLAP's model input: resample, int16 quantisation, then the fusion
    mel (or the 10 s windows). Holds no model, so worker processes can run it."""

    sample_rate: int
    audio_cfg: dict
    window_samples: int
    max_windows: int
    long_clip: LongClip

    def __call__(self, path: Path) -> FusionInput | np.ndarray:
        return self.from_samples(self.load(path))

    def load(self, path: Path) -> np.ndarray:
        """The file's mono waveform at the model's rate (a long one is cut into moments by the caller)."""
        return load_audio(path, self.sample_rate)

    def blocks(self, path: Path) -> Iterator[np.ndarray]:
        """`load`'s waveform as a stream of blocks (a long recording is cut into moments while it is read)."""
        return audio_blocks(path, self.sample_rate)

    def from_samples(self, wave: np.ndarray) -> FusionInput | np.ndarray:
        """A mono float waveform at the model's rate (a whole file, or one segment of a long one)."""
        return self.from_wave(quantize_int16(wave))

    def from_wave(self, wave: np.ndarray) -> FusionInput | np.ndarray:
        if self.long_clip is LongClip.FUSION:
            return clip_fusion_input(wave, self.audio_cfg, self.window_samples)
        return make_windows(wave, self.window_samples, self.max_windows)


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
        self.long_clip = LongClip.parse(opts.get("long_clip", LongClip.FUSION))
        self.context_length = int(opts["context_length"])
        self.audio_batch = batch_size_for(device, opts["batch_audio"])
        self.text_batch = batch_size_for(device, opts["batch_text"])
        self._spec = spec
        self._model = model
        self._tokenizer = tokenizer
        self._weight_paths = weight_paths

    def with_long_clip(self, mode: LongClip | str) -> ClapEncoder:
        """This encoder with another long-clip mode, sharing the loaded model (comparisons, benchmarks)."""
        spec = dataclasses.replace(self._spec, options={**self._spec.options, "long_clip": LongClip.parse(mode).value})
        model_cfg = {"audio_cfg": self.audio_cfg}
        return ClapEncoder(
            spec, self._model, model_cfg, self._tokenizer, self.modalities, self.device, self._weight_paths
        )

    # -- audio -----------------------------------------------------------------------------------
    def preparer(self, modality: str) -> ClapAudioPreparer:
        """The model-free decode step for `modality` (picklable: decode worker processes run it)."""
        if modality != AUDIO:
            raise ConfigError(f"{self.name} encodes audio files, not {modality}")
        return ClapAudioPreparer(
            self.sample_rate, self.audio_cfg, self.window_samples, self.max_windows, self.long_clip
        )

    def prepare(self, modality: str, path: Path) -> FusionInput | np.ndarray:
        """Decode one file into its model input (by `long_clip`); DecodeError names a bad file.

        fusion: a FusionInput (mel_fusion (4, 1001, 64)); window-mean: windows (W, 480000) float32.
        """
        return self.preparer(modality)(path)

    def prepare_wave(self, wave: np.ndarray) -> FusionInput | np.ndarray:
        """An int16-quantised 48 kHz mono waveform (T,) -> what prepare() returns for it."""
        return self.preparer(AUDIO).from_wave(wave)

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

    @torch.inference_mode()
    def encode_fusion(self, items: Sequence[FusionInput]) -> np.ndarray:
        """Bare model forward on fusion inputs -> (N, 512) float32, rows normalised."""
        require_tower(self, AUDIO)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)

        # run_batched splits one tensor (and halves batches on CUDA OOM): give it the item indices.
        def forward(part: torch.Tensor) -> torch.Tensor:
            inputs = [
                {
                    "mel_fusion": items[i].mel_fusion.to(self.device, self.dtype),
                    "longer": torch.tensor([items[i].longer]),
                }
                for i in part.tolist()
            ]
            return self._model.get_audio_embedding(inputs)

        return as_numpy(run_batched(forward, torch.arange(len(items)), self.audio_batch), self.dim)

    def encode_prepared(self, modality: str, items: Sequence[FusionInput | np.ndarray]) -> np.ndarray:
        """Encode what prepare() returned -> (N, 512) float32, rows normalised.

        fusion: one forward per file; window-mean: mean of a file's window vectors, re-normalised.
        """
        require_tower(self, AUDIO)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.long_clip is LongClip.FUSION:
            return self.encode_fusion(items)  # type: ignore[arg-type]
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
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """RoBERTa tokens exactly as laion_clap's CLAP_Module.tokenizer makes them; empty -> InputError.

        The text goes to the tokenizer unchanged: byte-level BPE encodes spaces, tabs and newlines as
        tokens, so collapsing or stripping whitespace would give the model different input.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        check_texts(texts)  # validation only: its whitespace-cleaned copies are not used
        return self._tokens(texts)

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self._tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.context_length,
            return_tensors="pt",
        )

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, 512) float32 normalised; RoBERTa tokens truncated to 77; empty -> InputError."""
        require_tower(self, TEXT)
        texts = [texts] if isinstance(texts, str) else list(texts)
        check_texts(texts)  # refuse the whole call before any forward
        outputs = []
        for part in chunks(texts, self.text_batch):
            tokens = self._tokens(list(part))
            data = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
            emb = self._model.get_text_embedding(data)
            outputs.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
        return as_numpy(torch.cat(outputs) if outputs else torch.empty(0), self.dim)

    def fingerprint(self) -> str:
        opts = {k: v for k, v in self._spec.options.items() if not k.startswith("batch")}
        opts["long_clip"] = self.long_clip.value
        # Bumped when the vectors change for the same options: v2 = fusion input for long clips (or the
        # window mean, by long_clip) and text tokenised unchanged (v1 collapsed whitespace).
        opts["pooling"] = (
            f"fusion-v2 ({FUSION_CHUNK_RULE})" if self.long_clip is LongClip.FUSION else "mean-of-normalised-windows-v2"
        )
        return fingerprint(self.name, self._weight_paths, opts)


def _cast_fusion_inputs(model: torch.nn.Module) -> None:
    """Let the fusion path run in half precision (the CUDA default, runtime.dtype_for).

    laion_clap's HTSAT PatchEmbed right-pads the local (crop) features with torch.zeros(...) in the
    default float32 before the fusion module, so in float16/bfloat16 a clip over 10 s fails with
    "Input type (float) and bias type (c10::Half) should be the same". Casting the fusion module's
    inputs to its own dtype is a no-op in float32 and exactly upstream's computation otherwise.
    """
    fusion = getattr(getattr(getattr(model, "audio_branch", None), "patch_embed", None), "fusion_model", None)
    if fusion is None:
        return

    def cast(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        dtype = next(module.parameters()).dtype
        return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    fusion.register_forward_pre_hook(cast)


def load_clap_encoder(
    spec: EncoderSpec,
    modalities: tuple[str, ...],
    weights_dir: Path | str | None,
    device: torch.device,
) -> ClapEncoder:
    """Registry factory: resolve checkpoint + roberta-base files, build the model offline."""
    names = {key: find_file(key).name for key in spec.files}
    paths = {key: resolve_weight(name, weights_dir) for key, name in names.items()}
    model, model_cfg = build_clap(paths["clap"], paths["roberta-config"], spec.options, towers=modalities)
    _cast_fusion_inputs(model)
    model = model.to(device=device, dtype=dtype_for(device))
    tokenizer = load_tokenizer(paths["roberta-vocab"]) if TEXT in modalities else None
    log.info("CLAP %s loaded from %s on %s", spec.options["amodel"], paths["clap"], device)
    return ClapEncoder(spec, model, model_cfg, tokenizer, modalities, device, [paths["clap"]])
