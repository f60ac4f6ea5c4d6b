"""CLAP audio front end: 10 s windows -> the log-mel input of laion_clap's fusion model.

laion_clap computes this in training/data.py:get_mel with torchaudio, which is not a dependency of
avsearch (and importing that module fetches tokenizers from the hub). This is the same computation in
plain torch: periodic Hann window, |STFT|^2 (n_fft 1024, hop 480, centred, reflect padding), an HTK
mel filterbank without normalisation (64 bands, 50 Hz - 14 kHz) and 10*log10(max(x, 1e-10)).
For a 480,000-sample window it gives (1001, 64) frames, as upstream.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch


def quantize_int16(wave: np.ndarray) -> np.ndarray:
    """Round-trip through int16 exactly as laion_clap does before every audio embedding."""
    as_int = (np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16)
    return (as_int / 32767.0).astype(np.float32)


def _hz_to_mel(freq: float) -> float:
    return 2595.0 * math.log10(1.0 + freq / 700.0)


@lru_cache(maxsize=4)
def mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> torch.Tensor:
    """(n_freqs, n_mels) triangular HTK filterbank, no area normalisation (torchaudio's default)."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_pts = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # (n_freqs, n_mels + 2)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.min(down, up), min=0.0)


def log_mel(windows: torch.Tensor, audio_cfg: dict[str, Any]) -> torch.Tensor:
    """Waveform windows (B, samples) float32 -> log-mel (B, frames, mel_bins) float32."""
    n_fft = int(audio_cfg["window_size"])
    window = torch.hann_window(n_fft, periodic=True, device=windows.device)
    spec = torch.stft(
        windows,
        n_fft=n_fft,
        hop_length=int(audio_cfg["hop_size"]),
        win_length=n_fft,
        window=window,
        center=True,
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


def fusion_inputs(windows: torch.Tensor, audio_cfg: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
    """Per-window input dicts for CLAP.get_audio_embedding on the deterministic fusion path.

    Every window is exactly 10 s, so laion_clap's own rule for such clips applies: the four fusion
    channels are the same mel (mel_fusion (4, frames, mel_bins)) and "longer" is False, which makes
    the fusion model skip its random local crops.
    """
    mels = log_mel(windows, audio_cfg)
    return [
        {"mel_fusion": m.unsqueeze(0).expand(4, -1, -1).contiguous(), "longer": torch.tensor([False])} for m in mels
    ]
