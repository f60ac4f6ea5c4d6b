"""CAV-MAE input front end: audio files -> normalised Kaldi fbank windows, image files -> 224 px crops.

Audio, as the public release prepares it (src/preprocess/extract_audio.py, then src/dataloader.py):
  file -> its FIRST channel (upstream: ffmpeg -ar 16000, then `sox remix 1`) at 16 kHz (soxr here,
  ffmpeg's resampler upstream) -> 16-bit PCM values, as the .wav files upstream reads back (x / 32768)
  -> waveform mean removed -> Kaldi fbank with torchaudio.compliance.kaldi.fbank semantics (htk_compat,
  128 mel bins, 25 ms frames, 10 ms shift, Hanning window, dither 0, no energy; Kaldi's defaults
  otherwise: per-frame DC removal, pre-emphasis 0.97, 512-point FFT, power spectrum, mel 20 Hz to
  Nyquist, log floored at float32 epsilon) -> zero-padded or cut to 1024 frames -> (x + 5.081) / 4.4849.
  The fbank here is our own plain-torch code (torchaudio is not a dependency); it is tested against
  torchaudio's outputs kept in tests/encoders/data/ (scripts/make_fbank_reference.py).

Clips longer than 10.24 s (1024 frames): upstream keeps only the first 1024 frames. avsearch embeds
W = min(ceil(frames / 1024), max_windows) windows of 1024 frames with evenly spaced starts, the first
at frame 0 (exactly upstream's input) and the last ending at the clip's last frame, and averages their
L2-normalised embeddings (then re-normalises; cavmae.CavMaeEncoder). Each window is computed from its
own slice of the waveform, which gives the same frames as the whole clip's fbank (Kaldi frames are
local), so memory stays bounded by max_windows whatever the file's length.

Images (dataloader.py's eval transform): resize the shorter side to 224 (PIL bicubic), centre crop 224,
then /255 and ImageNet mean/std, the last two per batch on the model's device (CavMaeEncoder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsearch.errors import DecodeError
from avsearch.media.audio import SILENCE_PEAK, _decode
from avsearch.media.detect import require
from avsearch.media.image import load_image
from avsearch.modalities import AUDIO

SAMPLE_RATE = 16_000
TARGET_FRAMES = 1024  # 10.24 s of 10 ms frames: the model's 8 x 64 patch grid
NUM_MEL_BINS = 128
NORM_MEAN = -5.081  # AudioSet fbank statistics used for every released model
NORM_STD = 4.4849
IMAGE_SIZE = 224
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)

_FRAME_LENGTH_MS = 25.0
_FRAME_SHIFT_MS = 10.0
_PREEMPHASIS = 0.97
_LOW_FREQ = 20.0
_EPSILON = float(torch.finfo(torch.float32).eps)  # Kaldi's floor before the log


def _next_power_of_2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _kaldi_mel(freq: torch.Tensor | float) -> torch.Tensor | float:
    if isinstance(freq, torch.Tensor):
        return 1127.0 * torch.log1p(freq / 700.0)
    return 1127.0 * math.log1p(freq / 700.0)


@lru_cache(maxsize=4)
def kaldi_mel_banks(num_bins: int, padded_window: int, sample_rate: float) -> torch.Tensor:
    """Kaldi's triangular mel filters (num_bins, padded_window // 2 + 1) float32, 20 Hz to Nyquist.

    Triangles are equally spaced on Kaldi's mel scale (1127 ln(1 + f / 700)); the Nyquist column is 0.
    """
    num_fft_bins = padded_window // 2
    mel_low, mel_high = _kaldi_mel(_LOW_FREQ), _kaldi_mel(0.5 * sample_rate)
    delta = (mel_high - mel_low) / (num_bins + 1)
    edges = mel_low + delta * torch.arange(num_bins + 2, dtype=torch.float32)  # left/centre/right per bin
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fft_mel = _kaldi_mel((sample_rate / padded_window) * torch.arange(num_fft_bins, dtype=torch.float32))[None, :]
    rising = (fft_mel - left) / (centre - left)
    falling = (right - fft_mel) / (right - centre)
    banks = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1))


def kaldi_fbank(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = NUM_MEL_BINS) -> torch.Tensor:
    """Log mel filterbank energies (frames, num_mel_bins) float32 of a mono waveform (T,).

    torchaudio.compliance.kaldi.fbank(w[None], htk_compat=True, use_energy=False, window_type="hanning",
    dither=0.0, frame_shift=10, num_mel_bins=...) computed in plain torch. Frames that fit whole
    (snip_edges): 1 + (T - 400) // 160 at 16 kHz; a waveform shorter than one frame gives none.
    """
    wave = torch.as_tensor(wave, dtype=torch.float32)
    size = int(sample_rate * _FRAME_LENGTH_MS / 1000)
    shift = int(sample_rate * _FRAME_SHIFT_MS / 1000)
    padded = _next_power_of_2(size)
    if wave.shape[0] < size:
        return torch.zeros((0, num_mel_bins), dtype=torch.float32)
    frames = wave.unfold(0, size, shift)  # (m, size), a view
    frames = frames - frames.mean(dim=1, keepdim=True)  # Kaldi removes each frame's DC offset
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # x[j-1], with x[-1] := x[0]
    frames = frames - _PREEMPHASIS * previous
    frames = frames * torch.hann_window(size, periodic=False, dtype=torch.float32)
    power = torch.fft.rfft(frames, n=padded).abs().pow(2.0)  # rfft zero-pads each frame to 512
    energies = power @ kaldi_mel_banks(num_mel_bins, padded, float(sample_rate)).T
    return torch.clamp(energies, min=_EPSILON).log()


def fit_frames(fbank: torch.Tensor, target: int = TARGET_FRAMES) -> torch.Tensor:
    """Zero-pad (at the end) or cut an fbank (frames, bins) to `target` frames, as upstream."""
    if fbank.shape[0] >= target:
        return fbank[:target]
    return torch.nn.functional.pad(fbank, (0, 0, 0, target - fbank.shape[0]))


def normalise(fbank: torch.Tensor) -> torch.Tensor:
    """Upstream's input scaling (x - mean) / std with the AudioSet statistics -5.081 and 4.4849."""
    return (fbank - NORM_MEAN) / NORM_STD


_QUANTIZE_CHUNK = 1 << 20  # samples a step: a long clip is not copied in float64 whole


def quantize_pcm16(wave: np.ndarray) -> np.ndarray:
    """Float samples -> the 16-bit PCM values upstream's .wav files hold, read back as k / 32768.

    Element by element, a chunk at a time: the result plus a few MB of float64 temporaries.
    """
    wave = np.asarray(wave)
    out = np.empty(wave.shape, np.float32)
    flat, flat_out = wave.reshape(-1), out.reshape(-1)
    for start in range(0, flat.size, _QUANTIZE_CHUNK):
        chunk = flat[start : start + _QUANTIZE_CHUNK].astype(np.float64)
        flat_out[start : start + _QUANTIZE_CHUNK] = np.clip(np.rint(chunk * 32768.0), -32768, 32767) / 32768.0
    return out


def load_first_channel(path: Path | str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a file's first channel at `sample_rate` Hz, 16-bit quantised: (T,) float32.

    Bad files fail as in avsearch.media.audio.load_audio (the same verdict for every encoder): missing,
    not a sound, undecodable, empty, non-finite or silent (judged on the whole file) is a DecodeError.
    """
    path = Path(path)
    require(path, AUDIO)
    data, rate = _decode(path, sample_rate)  # (samples, channels) float32; header checked first
    if data.size == 0:
        raise DecodeError(f"{path}: audio file holds no samples")
    if not np.isfinite(data).all():
        raise DecodeError(f"{path}: audio holds NaN or infinite samples")
    if float(np.abs(data.mean(axis=1)).max()) < SILENCE_PEAK:
        raise DecodeError(f"{path}: audio is silent (peak below one 16-bit step)")
    wave = np.ascontiguousarray(data[:, 0], dtype=np.float32)
    if rate != sample_rate:
        import librosa

        wave = librosa.resample(wave, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return quantize_pcm16(np.clip(wave, -1.0, 1.0, out=wave))  # wave: this call's own array


def window_starts(frames: int, target: int, max_windows: int) -> list[int]:
    """First frames of the windows of a clip of `frames` frames (see the module docstring)."""
    if frames <= target:
        return [0]
    count = max(1, min(math.ceil(frames / target), max_windows))
    return [int(s) for s in np.linspace(0, frames - target, count).round().astype(np.int64)]


def audio_inputs(wave: np.ndarray, max_windows: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """A 16 kHz mono waveform (T,) -> the model's inputs (W, 1024, 128) float32, one per window.

    The mean is removed over the whole waveform (upstream: waveform - waveform.mean()) before framing.
    """
    wave_t = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    if wave_t.numel() == 0:
        raise ValueError("empty waveform")
    wave_t = wave_t - wave_t.mean()
    size = int(sample_rate * _FRAME_LENGTH_MS / 1000)
    shift = int(sample_rate * _FRAME_SHIFT_MS / 1000)
    frames = 0 if wave_t.shape[0] < size else 1 + (wave_t.shape[0] - size) // shift
    windows = []
    for start in window_starts(frames, TARGET_FRAMES, max_windows):
        end = start * shift + (TARGET_FRAMES - 1) * shift + size  # samples the window's frames cover
        piece = wave_t[start * shift : end]
        windows.append(normalise(fit_frames(kaldi_fbank(piece, sample_rate))))
    return torch.stack(windows)


@dataclass(frozen=True)
class CavMaeAudioPreparer:
    """Decode one audio file into CAV-MAE inputs (W, 1024, 128) float32. Model-free: it pickles small."""

    max_windows: int
    sample_rate: int = SAMPLE_RATE

    def __call__(self, path: Path) -> torch.Tensor:
        return self.from_samples(self.load(path), path, quantized=True)

    def load(self, path: Path) -> np.ndarray:
        """The file's first channel at the model's rate, 16-bit quantised."""
        return load_first_channel(path, self.sample_rate)

    def from_samples(self, wave: np.ndarray, path: Path | str = "audio", quantized: bool = False) -> torch.Tensor:
        """A mono waveform at the model's rate (a whole file, or one segment of a long one; `quantized`:
        already 16-bit quantised, as `load` gives it)."""
        if wave.shape[0] < int(self.sample_rate * _FRAME_LENGTH_MS / 1000):
            raise DecodeError(f"{path}: audio shorter than one 25 ms frame")
        return audio_inputs(wave if quantized else quantize_pcm16(wave), self.max_windows, self.sample_rate)


class CavMaeImagePreparer:
    """Decode one image into CAV-MAE's crop before scaling: (3, 224, 224) uint8 (upstream's Resize +
    CenterCrop on the PIL image; ToTensor + Normalize run per batch). Model-free: it pickles small."""

    def __init__(self, size: int = IMAGE_SIZE) -> None:
        self.size = size
        self._steps: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"size": self.size, "_steps": None}

    def __call__(self, path: Path) -> torch.Tensor:
        return self.from_image(load_image(path))

    def from_image(self, image: Any) -> torch.Tensor:
        """An upright 8-bit RGB PIL image (a decoded file, or a video's frame) -> the crop."""
        if self._steps is None:  # torchvision imported in the process that decodes, on first use
            from torchvision import transforms

            bicubic = transforms.InterpolationMode.BICUBIC
            self._steps = transforms.Compose(
                [transforms.Resize(self.size, interpolation=bicubic), transforms.CenterCrop(self.size)]
            )
        crop = self._steps(image)
        return torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def scale_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 crops (N, 3, H, W) -> float32 ImageNet-normalised, as upstream's ToTensor + Normalize."""
    mean = torch.tensor(IMAGE_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.float().div(255) - mean) / std
