"""The CLAP log-mel front end equals librosa's HTK mel power spectrogram in dB (laion_clap's recipe)."""

from __future__ import annotations

import librosa
import numpy as np
import torch

from avsearch.encoders.clap_features import fusion_inputs, log_mel

CFG = {"window_size": 1024, "hop_size": 480, "fmin": 50, "fmax": 14000, "mel_bins": 64, "sample_rate": 48000}


def test_log_mel_matches_librosa_reference() -> None:
    rng = np.random.default_rng(0)
    wave = (0.2 * rng.standard_normal(48_000)).astype(np.float32)
    ours = log_mel(torch.from_numpy(wave)[None], CFG)[0].numpy()
    ref = librosa.feature.melspectrogram(
        y=wave,
        sr=48000,
        n_fft=1024,
        hop_length=480,
        win_length=1024,
        center=True,
        pad_mode="reflect",
        power=2.0,
        n_mels=64,
        fmin=50,
        fmax=14000,
        htk=True,
        norm=None,
    )
    ref_db = librosa.power_to_db(ref, ref=1.0, amin=1e-10, top_db=None).T
    assert ours.shape == ref_db.shape == (101, 64)
    assert np.abs(ours - ref_db).max() < 1e-2


def test_ten_second_window_gives_upstream_shapes() -> None:
    windows = torch.zeros(2, 480_000) + 0.1
    items = fusion_inputs(windows, CFG)
    assert len(items) == 2
    assert items[0]["mel_fusion"].shape == (4, 1001, 64)
    assert not bool(items[0]["longer"].any())
