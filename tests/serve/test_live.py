"""The server follows the index it serves: `avsearch index` (index_folder) adds files while the app runs,
and the next requests see them, without loading a model again. Index and queries use the test-only FAKE
encoder (tests/search/fake_encoder.py)."""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi.testclient import TestClient

from avsearch.indexing.pipeline import index_folder
from avsearch.serve.app import create_app
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_audio, write_image
from tests.serve.conftest import CountingLoader, Library


def _image_paths(c: TestClient) -> set[str]:
    r = c.get("/api/search", params={"text": "anything", "k": 100, "target": "image"})
    assert r.status_code == 200, r.text
    return {h["path"] for h in r.json()["results"][0]["hits"]}


def _count(c: TestClient, modality: str) -> int:
    return next(m["files"] for m in c.get("/api/info").json()["modalities"] if m["modality"] == modality)


def test_new_commit_is_picked_up_and_models_are_kept(own_library: Library) -> None:
    loader = CountingLoader()
    app = create_app(own_library.index, encoder_loader=loader, reload_interval=0)
    with TestClient(app) as c:
        before = _image_paths(c)
        assert before == {str(p) for p in own_library.images}
        assert _count(c, "audio") == len(own_library.sounds)
        loads = loader.calls
        added = [write_image(own_library.root / "new" / f"added{i}.png", 50 + i, 32) for i in range(3)]
        sound = write_audio(own_library.root / "new" / "added.wav", 7)
        index_folder(own_library.root, own_library.index, encoder_loader=FakeLoader())
        assert _image_paths(c) == before | {str(p) for p in added}
        assert _count(c, "audio") == len(own_library.sounds) + 1
        r = c.get(f"/api/items/{own_library.id(sound)}")
        assert r.status_code == 200 and r.json()["path"] == str(sound)
        assert app.state.live.reopened >= 1
        assert loader.calls == loads  # the re-opened index was handed the loaded text encoder


def test_keeps_answering_while_an_index_run_writes(own_library: Library, tmp_path: Path) -> None:
    for i in range(40):
        write_image(own_library.root / "batch" / f"b{i:02d}.png", 100 + i, 32)
    app = create_app(own_library.index, encoder_loader=FakeLoader(), reload_interval=0)
    statuses: list[int] = []
    with TestClient(app) as c:
        run = threading.Thread(
            target=index_folder,
            args=(own_library.root, own_library.index),
            kwargs={"encoder_loader": FakeLoader(), "batch_size": 4},  # many small commits
        )
        run.start()
        while run.is_alive():
            statuses.append(c.get("/api/search", params={"text": "x", "k": 5, "target": "image"}).status_code)
        run.join()
        assert len(_image_paths(c)) == len(own_library.images) + 40
    assert len(statuses) > 1 and set(statuses) == {200}
