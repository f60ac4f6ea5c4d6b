"""Write tests/encoders/data/cavmae_fbank_reference.npz: torchaudio's Kaldi fbank on fixed waveforms.

avsearch computes CAV-MAE's fbank in plain torch (avsearch/encoders/cavmae_features.py) and does not
depend on torchaudio. This script computes the reference it is tested against, with the call the
CAV-MAE release makes (src/dataloader.py, _wav2fbank):

    torchaudio.compliance.kaldi.fbank(waveform - waveform.mean(), htk_compat=True, sample_frequency=sr,
        use_energy=False, window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)

Run it once in an environment that has torchaudio, kept apart from the project's .venv, e.g.:

    python -m venv /tmp/ta-venv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/ta-venv/lib/python3.11/site-packages/main.pth
    /tmp/ta-venv/bin/pip install --no-deps torchaudio==2.11.1   # declares torch>=2.11
    /tmp/ta-venv/bin/python scripts/make_fbank_reference.py

The waveforms are generated here (fixed seed), stored as 16-bit PCM values, like the .wav files
upstream reads (k / 32768), so the test feeds both implementations exactly the same samples.
The file records the torch and torchaudio versions that made it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchaudio
from torchaudio.compliance import kaldi

RATE = 16_000
OUT = Path(__file__).resolve().parent.parent / "tests" / "encoders" / "data" / "cavmae_fbank_reference.npz"


def _pcm16(wave: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(wave * 32768.0), -32768, 32767).astype(np.int16)


def cases() -> dict[str, np.ndarray]:
    """Named int16 waveforms at 16 kHz: tones, noise, a chirp, near silence, very short, over 10.24 s."""
    rng = np.random.default_rng(17)

    def t(seconds: float) -> np.ndarray:
        return np.arange(int(round(seconds * RATE))) / RATE

    tt = t(1.5)
    chirp = 0.3 * np.sin(2 * np.pi * (100 * tt + (7000 - 100) / (2 * 1.5) * tt**2))
    tl = t(10.4)
    long = 0.25 * np.sin(2 * np.pi * 330 * tl) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.3 * tl))
    long += 0.05 * rng.standard_normal(tl.size)
    return {
        "sine_dc": _pcm16(0.5 * np.sin(2 * np.pi * 440 * t(1.0)) + 0.2),  # with a DC offset
        "noise": _pcm16(0.1 * rng.standard_normal(t(0.5).size)),
        "chirp": _pcm16(chirp),
        "quiet": _pcm16(3e-4 * rng.standard_normal(t(0.5).size)),  # about -70 dBFS: log floor region
        "one_frame": _pcm16(0.2 * rng.standard_normal(400 + 90)),  # 490 samples: exactly one frame
        "long": _pcm16(long),  # 1038 frames: more than the model's 1024
    }


def main() -> None:
    arrays: dict[str, np.ndarray] = {}
    for name, pcm in cases().items():
        wave = torch.from_numpy(pcm.astype(np.float32) / 32768.0)[None, :]  # torchaudio.load's scaling
        wave = wave - wave.mean()
        fbank = kaldi.fbank(
            wave,
            htk_compat=True,
            sample_frequency=RATE,
            use_energy=False,
            window_type="hanning",
            num_mel_bins=128,
            dither=0.0,
            frame_shift=10,
        )
        arrays[f"wave_{name}"] = pcm
        arrays[f"fbank_{name}"] = fbank.numpy().astype(np.float32)
        print(f"{name}: {pcm.size} samples -> fbank {tuple(fbank.shape)}")
    arrays["versions"] = np.array(f"torch {torch.__version__}, torchaudio {torchaudio.__version__}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
