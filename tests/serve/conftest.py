"""Fixtures for the server tests: small indexes made with the test-only FAKE encoder.

The encoder is tests/search/fake_encoder.py's FakeLoader: it decodes files with avsearch's real decoders
but is not a model (deterministic vectors from the decoded content), so an index of a dozen files builds
in a second. The two bridges are the real architecture with random weights (tests/search/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from avsearch.indexing.pipeline import index_folder
from avsearch.serve.app import create_app
from avsearch.store.table_schema import path_key
from tests.search.conftest import make_3d_bridge, make_bridge
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_audio, write_cloud, write_image

UPLOAD_LIMIT = 256 * 1024  # bytes: small, so the oversized-upload tests stay small


class CountingLoader(FakeLoader):
    """FakeLoader that counts how often an encoder is asked for (models must load once per process)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __call__(self, name: str, towers: tuple[str, ...]):  # noqa: ANN204 - FakeEncoder
        self.calls += 1
        return super().__call__(name, towers)


@dataclass
class Library:
    root: Path
    index: Path
    images: list[Path] = field(default_factory=list)
    sounds: list[Path] = field(default_factory=list)
    clouds: list[Path] = field(default_factory=list)

    def id(self, path: Path) -> str:
        return path_key(str(path))


def write_png(path: Path, seed: int, size: int = 300) -> Path:
    """A PNG whatever the name says (write_image picks the format from the suffix)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size, size // 2, 3), dtype=np.uint8)).save(path, format="PNG")
    return path


def make_library(root: Path, index: Path, bridges: list[Path], images: int = 3, sounds: int = 3) -> Library:
    lib = Library(root, index)
    lib.images = [write_image(root / "pics" / f"pic{i}.{'jpg' if i % 2 else 'png'}", i, 64) for i in range(images)]
    lib.images.append(write_png(root / "pics" / "looks_like_a_sound.wav", 99))  # a PNG under a sound's name
    lib.sounds = [write_audio(root / "sounds" / f"tone{i}.wav", i) for i in range(sounds)]
    lib.clouds = [write_cloud(root / "shapes" / f"shape{i}.npy", i) for i in range(2)]
    summary = index_folder(root, index, bridges, encoder_loader=FakeLoader())
    assert not summary.failed, summary.failed
    return lib


@pytest.fixture(scope="session")
def bridges(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("serve-bridges")
    return [make_bridge(folder / "av.safetensors"), make_3d_bridge(folder / "3d.safetensors")]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, bridges: list[Path]) -> Library:
    base = tmp_path_factory.mktemp("served")
    return make_library(base / "media", base / "index", bridges)


@pytest.fixture(scope="module")
def client(library: Library) -> Iterator[TestClient]:
    app = create_app(library.index, encoder_loader=CountingLoader(), max_upload_bytes=UPLOAD_LIMIT, reload_interval=0)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def own_library(tmp_path: Path, bridges: list[Path]) -> Library:
    """A library and index of the test's own, for tests that change files or the index."""
    return make_library(tmp_path / "media", tmp_path / "index", bridges, images=2, sounds=1)


@dataclass
class MomentLibrary:
    """A folder with a video and a long recording, indexed as moments (tests/media/videos.py's video: a red
    square on a grey shot from 4 to 7 s, a tone from 8 to 10 s; the recording silent for 5 s, then a tone)."""

    root: Path
    index: Path
    video: Path
    recording: Path
    picture: Path


SQUARE_AT = (4.0, 7.0)  # seconds the generated video shows its red square


@pytest.fixture(scope="session")
def moment_library(tmp_path_factory: pytest.TempPathFactory, bridges: list[Path]) -> MomentLibrary:
    import soundfile as sf

    from tests.media.videos import make_video

    base = tmp_path_factory.mktemp("served-moments")
    media = base / "media"
    media.mkdir()
    video = make_video(media / "walk.mp4", seconds=12.0, square=SQUARE_AT, tone=(8.0, 10.0))
    rate = 16_000
    t = np.arange(15 * rate) / rate
    wave = np.where(t >= 5.0, 0.3 * np.sin(2 * np.pi * 330 * t), 0.0).astype(np.float32)
    recording = media / "field.wav"
    sf.write(recording, wave, rate)
    picture = write_image(media / "photo.png", 3, 64)
    summary = index_folder(media, base / "index", bridges, encoder_loader=FakeLoader())
    assert not summary.failed, summary.failed
    return MomentLibrary(media, base / "index", video, recording, picture)
