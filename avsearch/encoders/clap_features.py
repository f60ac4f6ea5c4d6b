"""CLAP audio front end: waveforms -> the log-mel inputs of laion_clap's fusion model.

laion_clap computes this in training/data.py (get_mel, get_audio_features) with torchaudio, which is
not a dependency of avsearch (and importing that module fetches tokenizers from the hub). This is the
same computation in plain torch: periodic Hann window, |STFT|^2 (n_fft 1024, hop 480, centred, reflect
padding), an HTK mel filterbank without normalisation (64 bands, 50 Hz - 14 kHz) and
10*log10(max(x, 1e-10)). For a 480,000-sample window it gives (1001, 64) frames, as upstream.

The fusion input of one clip (get_audio_features with data_truncating="fusion",
data_filling="repeatpad") is `mel_fusion` (4, 1001, 64) plus a `longer` flag:
- clip <= 10 s: repeat-padded to 10 s; the four channels are the same mel; longer = False.
- clip > 10 s: channel 0 is the mel of the WHOLE clip shrunk to 1001 frames (bilinear, antialiased,
  as torchvision's Resize does on tensors), channels 1-3 are three 1001-frame crops of the clip's
  mel, one from each third of the possible start frames; longer = True. Upstream draws each crop
  start at random (np.random.choice), so one file gives different vectors from run to run. avsearch
  takes them evenly spaced instead (FUSION_CHUNK_RULE): the first start of the first third (the
  clip's opening 10 s), the middle start of the middle third and the last start of the last third
  (the clip's closing 10 s). Each is a start upstream could have drawn, so the model sees input of
  the kind it was trained on, and the same file always gives the same vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

# The numpy-only parts live with the ONNX query path's front end (clap_inputs.py); imported from here too.
from avsearch.encoders.clap_inputs import FUSION_CHUNK_RULE, fusion_chunk_starts, quantize_int16, repeat_padded  # noqa: F401
from avsearch.encoders.clap_inputs import mel_filterbank as np_mel_filterbank


@lru_cache(maxsize=4)
def mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> torch.Tensor:
    """(n_freqs, n_mels) triangular HTK filterbank, no area normalisation (torchaudio's default): the
    query path's numpy one (clap_inputs.py), in float32."""
    return torch.from_numpy(np_mel_filterbank(n_freqs, f_min, f_max, n_mels, sample_rate).astype(np.float32))


def _log_mel(windows: torch.Tensor, audio_cfg: dict[str, Any], center: bool) -> torch.Tensor:
    n_fft = int(audio_cfg["window_size"])
    window = torch.hann_window(n_fft, periodic=True, device=windows.device)
    spec = torch.stft(
        windows,
        n_fft=n_fft,
        hop_length=int(audio_cfg["hop_size"]),
        win_length=n_fft,
        window=window,
        center=center,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    power = spec.abs().pow(2.0)  # (B, n_fft // 2 + 1, frames)
    fb = mel_filterbank(
        n_fft // 2 + 1,
        float(audio_cfg["fmin"]),
        float(audio_cfg["fmax"]),
        int(audio_cfg["mel_bins"]),
        int(audio_cfg["sample_rate"]),
    ).to(windows.device)
    mel = torch.matmul(power.transpose(-1, -2), fb)  # (B, frames, mel_bins)
    return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))


def log_mel(windows: torch.Tensor, audio_cfg: dict[str, Any]) -> torch.Tensor:
    """Waveform windows (B, samples) float32 -> log-mel (B, frames, mel_bins) float32."""
    return _log_mel(windows, audio_cfg, center=True)


def log_mel_long(wave: torch.Tensor, audio_cfg: dict[str, Any], block_frames: int = 4096) -> torch.Tensor:
    """log_mel of one waveform (T,) of any length -> (1 + T // hop, mel_bins), computed in blocks.

    The same frames as log_mel(wave[None])[0], but the STFT of a long clip (an hour holds 360,000
    frames: ~1.5 GB as complex numbers) is never held whole: the clip is reflect-padded once, as a
    centred STFT does, and cut into blocks of frames whose STFTs need no further padding.
    """
    n_fft, hop = int(audio_cfg["window_size"]), int(audio_cfg["hop_size"])
    pad = n_fft // 2
    padded = torch.nn.functional.pad(wave[None, None], (pad, pad), mode="reflect")[0, 0]
    frames = 1 + int(wave.shape[0]) // hop
    blocks = []
    for first in range(0, frames, block_frames):
        last = min(frames, first + block_frames)  # exclusive
        segment = padded[first * hop : (last - 1) * hop + n_fft]
        blocks.append(_log_mel(segment[None], audio_cfg, center=False)[0])
    return torch.cat(blocks)


def fusion_inputs(windows: torch.Tensor, audio_cfg: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
    """Per-window input dicts for CLAP.get_audio_embedding on the deterministic fusion path.

    Every window is exactly 10 s, so laion_clap's own rule for such clips applies: the four fusion
    channels are the same mel (mel_fusion (4, frames, mel_bins)) and "longer" is False, which makes
    the fusion model skip its local crops. This is the input of the "window-mean" long-clip mode.
    """
    mels = log_mel(windows, audio_cfg)
    return [
        {"mel_fusion": m.unsqueeze(0).expand(4, -1, -1).contiguous(), "longer": torch.tensor([False])} for m in mels
    ]


def shrink_mel(mel: torch.Tensor, frames: int) -> torch.Tensor:
    """The whole clip's mel (T, mel_bins) squeezed to (frames, mel_bins): the fusion model's global view.

    Bilinear with antialiasing, as laion_clap's torchvision.transforms.Resize call does on a tensor
    with torchvision >= 0.17 (antialias=True became its default there).
    """
    resized = torch.nn.functional.interpolate(
        mel[None, None], size=(frames, mel.shape[1]), mode="bilinear", align_corners=False, antialias=True
    )
    return resized[0, 0]


@dataclass(frozen=True)
class FusionInput:
    """One clip's input to the fusion model: mel_fusion (4, 1001, 64) float32 and the `longer` flag."""

    mel_fusion: torch.Tensor
    longer: bool


def clip_fusion_input(wave: np.ndarray, audio_cfg: dict[str, Any], max_len: int = 480_000) -> FusionInput:
    """A whole clip (T,) float32, already int16-quantised -> its fusion input (see the module doc).

    Mirrors laion_clap get_audio_features(data_truncating="fusion", data_filling="repeatpad"), with the
    random crop starts replaced by fusion_chunk_starts.
    """
    if int(wave.shape[0]) <= max_len:
        window = repeat_padded(wave, max_len)
        mel = log_mel(torch.from_numpy(window)[None], audio_cfg)[0]
        return FusionInput(mel.unsqueeze(0).expand(4, -1, -1).contiguous(), longer=False)
    mel = log_mel_long(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), audio_cfg)
    chunk_frames = max_len // int(audio_cfg["hop_size"]) + 1
    total_frames = int(mel.shape[0])
    if total_frames == chunk_frames:
        # Upstream's corner case: a clip under one hop longer than 10 s is used whole, as a short one.
        return FusionInput(mel.unsqueeze(0).expand(4, -1, -1).contiguous(), longer=False)
    starts = fusion_chunk_starts(total_frames, chunk_frames)
    parts = [shrink_mel(mel, chunk_frames), *(mel[s : s + chunk_frames] for s in starts)]
    return FusionInput(torch.stack(parts), longer=True)
