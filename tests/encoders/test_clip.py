"""CLIP ViT-B/32 through open_clip, loaded off-line from a weights folder.

The folder holds ViT-B-32.pt with RANDOM weights of the real architecture (tests/weights_factory.py);
it goes through open_clip's real create_model/load_checkpoint code. Vectors are checked for shape,
norm, determinism and consistency, never against figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avsearch.encoders.registry import load_encoder
from avsearch.errors import DecodeError, InputError, WeightsMissingError


@pytest.fixture(scope="module")
def clip(clip_weights_dir: Path):
    return load_encoder("clip-vit-b-32-openai", ["image", "text"], weights_dir=clip_weights_dir, device="cpu")


def test_offline_load_and_encode_images(clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = []
    for i, fmt in enumerate(["PNG", "JPEG", "WEBP"]):
        p = tmp_path / f"im{i}.{fmt.lower()}"
        Image.new("RGB", (64 + 10 * i, 48), (40 * i, 100, 200)).save(p, fmt)
        paths.append(p)
    vectors = clip.encode_files("image", paths)
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = clip.encode_files("image", paths)
    assert np.array_equal(vectors, again)  # same files -> bit-identical
    assert clip.fingerprint() == clip.fingerprint() and clip.fingerprint().startswith("clip-vit-b-32-openai:")


def test_bad_image_names_the_file(clip, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    with pytest.raises(DecodeError, match="broken.jpg"):
        clip.encode_files("image", [bad])


def test_text(clip) -> None:
    long_text = "word " * 500  # beyond 77 tokens: truncated, not an error
    vectors = clip.encode_text(["a dog", "a cat", long_text])
    assert vectors.shape == (3, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(vectors[0], vectors[1])
    with pytest.raises(InputError, match="empty"):
        clip.encode_text(["ok", ""])


def test_text_only_load_drops_image_tower(clip_weights_dir: Path) -> None:
    text_only = load_encoder("clip-vit-b-32-openai", ["text"], weights_dir=clip_weights_dir, device="cpu")
    assert text_only._model.visual is None
    assert text_only.encode_text(["x"]).shape == (1, 512)


def test_missing_weights_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "avcache"))
    monkeypatch.setenv("AVSEARCH_OFFLINE", "1")
    (tmp_path / "none").mkdir()
    with pytest.raises(WeightsMissingError, match=r"ViT-B-32\.pt"):
        load_encoder("clip-vit-b-32-openai", ["text"], weights_dir=tmp_path / "none", device="cpu")
