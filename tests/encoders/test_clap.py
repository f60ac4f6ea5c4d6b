"""LAION-CLAP fusion model through laion_clap's clap_module, loaded off-line from a weights folder.

The folder (tests/weights_factory.py) holds 630k-fusion-best.pt with RANDOM weights of the real
HTSAT-tiny fusion audio tower and a TINY RoBERTa text tower (1 layer; the real roberta-base has 12 and
would make these tests minutes slower on CPU), plus roberta-base/{config,vocab,merges} describing that
tiny RoBERTa. The model is built by laion_clap's create_model/CLAP classes; nothing is faked.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avsearch.encoders.registry import clear_cache, load_encoder
from avsearch.errors import DecodeError, InputError


@pytest.fixture(scope="module")
def clap(clap_weights_dir: Path):
    return load_encoder("clap-630k-fusion", ["audio", "text"], weights_dir=clap_weights_dir, device="cpu")


def _write(path: Path, seconds: float, rate: int = 44_100, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * (300 + 200 * seed) * t) + 0.05 * rng.standard_normal(t.shape)
    sf.write(path, wave.astype(np.float32), rate)
    return path


def test_audio_vectors(clap, tmp_path: Path) -> None:
    files = [_write(tmp_path / "short.wav", 1.5), _write(tmp_path / "long.flac", 23.0, seed=1)]
    vectors = clap.encode_files("audio", files)
    assert vectors.shape == (2, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_same_file_bit_identical_even_after_reload(clap, clap_weights_dir: Path, tmp_path: Path) -> None:
    long_clip = _write(tmp_path / "long.wav", 25.0, seed=2)  # > 10 s: upstream would crop at random
    first = clap.encode_files("audio", [long_clip])
    assert np.array_equal(first, clap.encode_files("audio", [long_clip]))
    clear_cache()
    fresh = load_encoder("clap-630k-fusion", ["audio"], weights_dir=clap_weights_dir, device="cpu")
    assert np.array_equal(first, fresh.encode_files("audio", [long_clip]))


def test_bad_audio_errors(clap, tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(48_000, np.float32), 48_000)
    junk = tmp_path / "junk.ogg"
    junk.write_bytes(b"OggS" + b"\x00" * 50)
    for path, reason in [(silent, "silent"), (junk, "junk.ogg")]:
        with pytest.raises(DecodeError, match=reason):
            clap.encode_files("audio", [path])


def test_text(clap) -> None:
    vectors = clap.encode_text(["a dog barks", "birds sing at dawn", "rain " * 300])
    assert vectors.shape == (3, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(vectors[0], vectors[1])
    with pytest.raises(InputError, match="empty"):
        clap.encode_text([" "])


def test_load_touches_no_network(clap_weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a, **_k):
        raise AssertionError("network access during an off-line CLAP load")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    clear_cache()
    text_only = load_encoder("clap-630k-fusion", ["text"], weights_dir=clap_weights_dir, device="cpu")
    assert text_only._model.audio_branch is None
    assert text_only.encode_text(["offline"]).shape == (1, 512)
