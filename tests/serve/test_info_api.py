"""/api/info reports kinds of file (modalities) apart from the backends' tables: an index made with C-MCR
and CAV-MAE lists audio, image and pointcloud once each, and the two backends with their tables.
Index from the test-only FAKE encoder."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from avsearch.indexing.pipeline import index_folder
from avsearch.serve.app import create_app
from tests.search.fake_encoder import FakeLoader
from tests.serve.conftest import Library, make_library


def test_modalities_and_backends_apart(tmp_path: Path, bridges: list[Path]) -> None:
    lib: Library = make_library(tmp_path / "media", tmp_path / "index", bridges, images=2, sounds=2)
    index_folder(lib.root, lib.index, bridges, encoder_loader=FakeLoader(), backend="both")
    with TestClient(create_app(lib.index, encoder_loader=FakeLoader())) as c:
        info = c.get("/api/info").json()
    modalities = {m["modality"]: m for m in info["modalities"]}
    assert set(modalities) == {"audio", "image", "pointcloud"}  # no "cavmae_audio" among kinds of file
    assert modalities["audio"]["files"] == len(lib.sounds) and modalities["image"]["files"] == len(lib.images)
    assert sorted(modalities["audio"]["backends"]) == ["cavmae", "cmcr"]
    assert modalities["pointcloud"]["backends"] == ["cmcr"]  # CAV-MAE takes no 3D shapes
    tables = {b["backend"]: {t["table"]: t["modality"] for t in b["tables"]} for b in info["backends"]}
    assert tables["cmcr"] == {"audio": "audio", "image": "image", "pointcloud": "pointcloud"}
    assert tables["cavmae"] == {"cavmae_audio": "audio", "cavmae_image": "image"}
