"""The ULIP-2 encoder on the real architectures (random weights): shapes, norms, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avsearch.encoders.base import Encoder
from avsearch.encoders.pointbert import farthest_point_sample, knn_indices
from avsearch.encoders.ulip import embed_pointclouds
from avsearch.errors import DecodeError, IncompatibleError


def test_fps_is_deterministic_and_spreads() -> None:
    xyz = torch.randn(2, 4096, 3)
    a = farthest_point_sample(xyz, 64)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(a, farthest_point_sample(xyz, 64))
    centroid = xyz.mean(dim=1, keepdim=True)
    assert torch.equal(a[:, 0], ((xyz - centroid) ** 2).sum(-1).argmax(-1))  # documented start point
    assert all(len(set(row.tolist())) == 64 for row in a)


def test_knn_includes_the_centre() -> None:
    xyz = torch.randn(1, 500, 3)
    idx = knn_indices(8, xyz, xyz[:, :10])
    assert torch.equal(idx[0, :, 0], torch.arange(10))


def test_protocol_and_metadata(ulip_encoder) -> None:
    assert isinstance(ulip_encoder, Encoder)
    assert (ulip_encoder.name, ulip_encoder.space, ulip_encoder.dim) == ("ulip2-pointbert", "ulip", 512)
    assert ulip_encoder.modalities == ("pointcloud", "image")
    fp = ulip_encoder.fingerprint()
    assert fp.startswith("ulip2-pointbert:") and fp == ulip_encoder.fingerprint()
    with pytest.raises(IncompatibleError, match="does not encode text"):
        ulip_encoder.encode_text(["a chair"])
    with pytest.raises(IncompatibleError):
        ulip_encoder.encode_files("audio", [Path("x.wav")])


def test_same_file_same_embedding(ulip_encoder, make_cloud, tmp_path: Path) -> None:
    a, b = tmp_path / "a.npy", tmp_path / "b.xyz"
    np.save(a, make_cloud(9000, seed=1))
    cloud_b = make_cloud(3000, seed=2)
    b.write_text("".join(f"{x} {y} {z}\n" for x, y, z in cloud_b))
    first = ulip_encoder.encode_files("pointcloud", [a, b])
    assert first.shape == (2, 512) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(first[0], first[1])
    alone = embed_pointclouds([a], ulip_encoder)
    # batched with another cloud, the same up to the kernels' rounding (batch-size dependent on some CPUs)
    np.testing.assert_allclose(first[:1], alone, atol=1e-6)
    torch.manual_seed(999)  # ULIP's reference FPS would now start elsewhere; ours must not care
    again = embed_pointclouds([a], ulip_encoder)
    assert np.array_equal(alone, again)  # the same batch: bit for bit


def test_bad_file_names_it(ulip_encoder, tmp_path: Path) -> None:
    bad = tmp_path / "bad.ply"
    bad.write_text("nonsense")
    with pytest.raises(DecodeError, match="bad.ply"):
        ulip_encoder.encode_files("pointcloud", [bad])


def test_point_array_checks(ulip_encoder) -> None:
    with pytest.raises(Exception, match=r"\(B, N, 3\)"):
        ulip_encoder.encode_points(np.zeros((8192, 3), np.float32))


def test_image_tower(ulip_encoder, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(300, 200), (64, 64)]):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(p)
        paths.append(p)
    emb = ulip_encoder.encode_files("image", paths)
    assert emb.shape == (2, 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG....")
    with pytest.raises(DecodeError, match="broken.png"):
        ulip_encoder.encode_files("image", [tmp_path / "broken.png"])
