"""CLAP's query inputs made without torch, transformers or librosa, for the ONNX query path.

Text: RoBERTa's byte-level BPE from the same vocab.json + merges.txt through the `tokenizers` library,
with RoBERTa's <s> ... </s> framing, truncation and padding to the context length: what
ClapEncoder._tokens gets from transformers' RobertaTokenizer (padding="max_length", truncation=True),
compared in tests/encoders/test_onnx_towers.py.

Audio: the fusion model's log-mel input (clap_features.py's torch computation, which mirrors laion_clap's
get_audio_features) in numpy: the STFT in float64 where torch's runs in float32, so the two differ by
torch's rounding (compared in tests/encoders/test_onnx_audio_pointcloud.py, with the tolerance stated there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np


class ClapTokenizer:
    """texts -> (input_ids, attention_mask), each (N, context_length) int64."""

    SPECIAL = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

    def __init__(self, vocab: Path, merges: Path, context_length: int = 77) -> None:
        from tokenizers import ByteLevelBPETokenizer
        from tokenizers.processors import RobertaProcessing

        tok = ByteLevelBPETokenizer(str(vocab), str(merges), add_prefix_space=False, trim_offsets=True)
        tok.add_special_tokens(list(self.SPECIAL))
        bos, eos, pad = (tok.token_to_id(t) for t in ("<s>", "</s>", "<pad>"))
        tok.post_processor = RobertaProcessing(("</s>", eos), ("<s>", bos), trim_offsets=True, add_prefix_space=False)
        tok.enable_truncation(context_length)
        tok.enable_padding(length=context_length, pad_id=pad, pad_token="<pad>")
        self._tok = tok

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = self._tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        return ids, mask


# -- audio: CLAP's fusion input in numpy (clap_features.py computes it with torch) ---------------------------

_QUANTIZE_CHUNK = 1 << 20  # samples a step: an hour of audio is not copied five times over at once
FUSION_CHUNK_RULE = "evenly-spaced: first of first third, middle of middle third, last of last third"


def quantize_int16(wave: np.ndarray) -> np.ndarray:
    """Round-trip through int16 exactly as laion_clap does before every audio embedding.

    Element by element, so it runs a chunk at a time: the result plus a few MB, not five full copies
    (float64 among them) of a long clip.
    """
    wave = np.asarray(wave)
    out = np.empty(wave.shape, np.float32)
    flat, flat_out = wave.reshape(-1), out.reshape(-1)
    for start in range(0, flat.size, _QUANTIZE_CHUNK):
        as_int = (np.clip(flat[start : start + _QUANTIZE_CHUNK], -1.0, 1.0) * 32767.0).astype(np.int16)
        flat_out[start : start + _QUANTIZE_CHUNK] = as_int / 32767.0
    return out


def fusion_chunk_starts(total_frames: int, chunk_frames: int) -> tuple[int, int, int]:
    """Start frames of the three local crops of a clip whose mel has `total_frames` > chunk_frames.

    Upstream splits the possible starts 0..total-chunk into thirds (np.array_split) and draws one start
    from each at random; here the draws are fixed (FUSION_CHUNK_RULE), and a third that is empty for a
    clip barely over 10 s falls back to start 0, as upstream does.
    """
    ranges = [list(r) or [0] for r in np.array_split(np.arange(total_frames - chunk_frames + 1), 3)]
    return int(ranges[0][0]), int(ranges[1][len(ranges[1]) // 2]), int(ranges[2][-1])


def _hz_to_mel(freq: float) -> float:
    return 2595.0 * math.log10(1.0 + freq / 700.0)


@lru_cache(maxsize=4)
def mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> np.ndarray:
    """(n_freqs, n_mels) float64 triangular HTK filterbank, no area normalisation (torchaudio's default)."""
    all_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    m_pts = np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(np.minimum(down, up), 0.0)


def log_mel(wave: np.ndarray, audio_cfg: dict[str, Any], block_frames: int = 2048) -> np.ndarray:
    """One waveform (T,) -> log-mel (1 + T // hop, mel_bins) float32: clap_features.log_mel_long's frames
    (|STFT|^2 of the reflect-padded, Hann-windowed frames, HTK mel, 10*log10(max(x, 1e-10))), computed in
    float64 a block of frames at a time, so a long clip's spectrum is never held whole."""
    n_fft, hop = int(audio_cfg["window_size"]), int(audio_cfg["hop_size"])
    padded = np.pad(np.asarray(wave, np.float32), n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]  # a view: (1 + T // hop, n_fft)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    fb = mel_filterbank(
        n_fft // 2 + 1,
        float(audio_cfg["fmin"]),
        float(audio_cfg["fmax"]),
        int(audio_cfg["mel_bins"]),
        int(audio_cfg["sample_rate"]),
    )
    out = np.empty((len(frames), fb.shape[1]), np.float32)
    for first in range(0, len(frames), block_frames):
        spec = np.fft.rfft(frames[first : first + block_frames] * window, axis=1)
        mel = (spec.real**2 + spec.imag**2) @ fb
        out[first : first + block_frames] = 10.0 * np.log10(np.maximum(mel, 1e-10))
    return out


def shrink_mel(mel: np.ndarray, frames: int) -> np.ndarray:
    """The whole clip's mel (T, mel_bins) squeezed to (frames, mel_bins) along time: torch's bilinear
    interpolation with antialiasing (clap_features.shrink_mel), i.e. a triangle filter stretched by the
    scale T / frames and normalised per output frame, with its positions and weights in float32 as torch
    computes them (in float64 the last frames' weights move by 1e-4). One output frame at a time: an
    hour's mel is not copied."""
    f32 = np.float32
    total = mel.shape[0]
    scale = f32(total) / f32(frames)
    support = scale if scale >= 1.0 else f32(1.0)  # bilinear: half-width 1, stretched when shrinking
    inv = f32(1.0) / scale if scale >= 1.0 else f32(1.0)
    out = np.empty((frames, mel.shape[1]), np.float32)
    for i in range(frames):
        centre = scale * f32(i + 0.5)
        lo = max(int(centre - support + f32(0.5)), 0)
        hi = min(int(centre + support + f32(0.5)), total)
        offsets = (np.arange(hi - lo, dtype=np.float32) + f32(lo) - centre + f32(0.5)) * inv
        weights = np.maximum(f32(1.0) - np.abs(offsets), f32(0.0))
        weights /= weights.sum(dtype=np.float32)
        out[i] = weights @ mel[lo:hi]
    return out


@dataclass(frozen=True)
class AudioInput:
    """One clip's input to CLAP's fusion model, in numpy: mel_fusion (4, 1001, 64) float32 and `longer`."""

    mel_fusion: np.ndarray
    longer: bool


def repeat_padded(wave: np.ndarray, max_len: int) -> np.ndarray:
    """A clip of at most `max_len` samples repeated whole, then zero-padded to `max_len` ("repeatpad")."""
    n = int(wave.shape[0])
    if n == 0:
        raise ValueError("empty waveform")
    window = np.zeros(max_len, dtype=np.float32)
    window[: (max_len // n) * n] = np.tile(wave, max_len // n)
    return window


def clip_fusion_input(wave: np.ndarray, audio_cfg: dict[str, Any], max_len: int = 480_000) -> AudioInput:
    """clap_features.clip_fusion_input without torch: a whole clip (T,) float32, already int16-quantised
    -> its fusion input (a clip up to 10 s repeat-padded, the four channels one mel; a longer clip: its
    whole mel shrunk to 10 s plus three 10 s crops at fusion_chunk_starts)."""
    if int(wave.shape[0]) <= max_len:
        window = repeat_padded(wave, max_len)
        return AudioInput(np.repeat(log_mel(window, audio_cfg)[None], 4, axis=0), longer=False)
    mel = log_mel(wave, audio_cfg)
    chunk_frames = max_len // int(audio_cfg["hop_size"]) + 1
    total_frames = int(mel.shape[0])
    if total_frames == chunk_frames:  # upstream's corner case: under one hop over 10 s is used whole
        return AudioInput(np.repeat(mel[None], 4, axis=0), longer=False)
    starts = fusion_chunk_starts(total_frames, chunk_frames)
    parts = [shrink_mel(mel, chunk_frames), *(mel[s : s + chunk_frames] for s in starts)]
    return AudioInput(np.stack(parts), longer=True)
