"""Long videos and recordings in bounded memory (avsearch/indexing/moments.py): a file with more moments
than [ingest] moment_chunk is prepared and encoded a chunk at a time, with the test-only FAKE encoder,
here instrumented to count the prepared items alive at once and the items of each model call."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avsearch.indexing.pipeline import index_folder
from avsearch.store.config import IngestConfig, SearchConfig
from avsearch.store.table_schema import NATIVE
from avsearch.store.tables import MediaStore
from tests.media.videos import make_video
from tests.search.fake_encoder import FakeEncoder, FakeLoader, FakePreparer
from tests.search.media_factory import write_image
from tests.search.test_moments_index import write_long_recording


class Held:
    """A prepared item that counts how many of its kind are alive (CPython frees it when dropped)."""

    lock = threading.Lock()
    alive = 0
    most = 0

    def __init__(self, value: np.ndarray) -> None:
        self.value = value
        with Held.lock:
            Held.alive += 1
            Held.most = max(Held.most, Held.alive)

    def __del__(self) -> None:
        with Held.lock:
            Held.alive -= 1


class HeldPreparer(FakePreparer):
    def from_image(self, image) -> Held:  # type: ignore[override]
        return Held(super().from_image(image))

    def from_samples(self, wave: np.ndarray) -> Held:  # type: ignore[override]
        return Held(super().from_samples(wave))


class HeldEncoder(FakeEncoder):
    """The fake encoder on Held items; records the size of each model call."""

    calls: list[int] = []

    def preparer(self, modality: str) -> HeldPreparer:
        super().preparer(modality)  # its modality check
        return HeldPreparer(modality)

    def encode_prepared(self, modality: str, items: Sequence[Held]) -> np.ndarray:
        HeldEncoder.calls.append(len(items))
        return super().encode_prepared(modality, [it.value for it in items])


class HeldLoader(FakeLoader):
    def __call__(self, name: str, towers: tuple[str, ...]) -> FakeEncoder:
        space = "clip" if name.startswith("clip") else "clap"
        return self.loaded.setdefault((name, towers), HeldEncoder(name, space, towers))


class Stages:
    """Progress that remembers its stages."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def start(self, stage: str, total: int | None) -> None:
        self.seen[stage] = 0

    def advance(self, stage: str, n: int = 1) -> None:
        self.seen[stage] += n

    def finish(self, stage: str) -> None:
        return None


def _rows(index: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    store = MediaStore(index)
    out = {}
    for modality in ("image", "audio"):
        refs, vectors = store.vectors(modality, NATIVE)[:2]  # (a third value: the version read)
        order = np.argsort(refs)
        out[modality] = ([refs[i] for i in order], np.asarray(vectors)[order])
    return out


def _chunked(chunk: int) -> SearchConfig:
    return SearchConfig(ingest=IngestConfig(moment_chunk=chunk))


def test_chunked_moments_give_the_unchunked_rows(bridge_file, tmp_path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    make_video(root / "walk.mp4", seconds=24, tone=(5, 8))  # frames: 3 rows; sound: 4 segments
    write_long_recording(root / "field.wav", seconds=20.0, event=(10.0, 12.0))  # 3 segments
    for seed in (1, 2, 3):  # one row each, encoded together: a model call is the batch's files as before
        write_image(root / f"pic{seed}.png", seed=seed)
    whole = index_folder(root, tmp_path / "whole", bridge_file, encoder_loader=FakeLoader())
    HeldEncoder.calls = []
    stages = Stages()
    chunked = index_folder(
        root, tmp_path / "chunked", bridge_file, encoder_loader=HeldLoader(), config=_chunked(2), progress=stages
    )
    assert sorted(HeldEncoder.calls, reverse=True)[:2] == [3, 2]  # the pictures' batch; no more moments than a chunk
    assert (
        (chunked.added, chunked.counts, chunked.failed)
        == (whole.added, whole.counts, whole.failed)
        == (
            5,
            {"image": 6, "audio": 7},
            [],
        )
    )
    a, b = _rows(tmp_path / "whole"), _rows(tmp_path / "chunked")
    for modality in ("image", "audio"):
        assert a[modality][0] == b[modality][0]  # the same rows: paths and time ranges
        np.testing.assert_allclose(a[modality][1], b[modality][1], atol=1e-6)
    # the long files were shown on the progress display, moments counted
    long = {stage: n for stage, n in stages.seen.items() if ": " in stage}
    assert long == {"embed audio: walk.mp4": 4, "embed audio: field.wav": 3, "embed image: walk.mp4": 3}


def test_a_long_video_holds_one_chunk_of_prepared_frames_at_a_time(bridge_file, tmp_path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    make_video(root / "walk.mp4", seconds=24, tone=(5, 8))  # alone: one file decoded at a time
    Held.most = 0
    s = index_folder(root, tmp_path / "index", bridge_file, encoder_loader=HeldLoader(), config=_chunked(2))
    assert s.counts == {"image": 3, "audio": 4}
    assert Held.most == 2 and Held.alive == 0


def test_a_long_silent_sound_track_gives_no_rows(bridge_file, tmp_path) -> None:
    """A sound track is cut while decoded; that it was silent is known at its end: its windows, encoded a
    chunk at a time (chunk 2 of 3) or in the decode worker (chunk 64), are dropped. A silent film keeps its
    frames; a sound-only .mp4 that is silent is listed in one line."""
    root = tmp_path / "media"
    root.mkdir()
    make_video(root / "hush.mp4", seconds=16, tone=None)
    make_video(root / "quiet.mp4", seconds=16, tone=None, video=False)
    for chunk in (2, 64):
        s = index_folder(
            root, tmp_path / f"index{chunk}", bridge_file, encoder_loader=FakeLoader(), config=_chunked(chunk)
        )
        assert s.counts == {"image": 2, "audio": 0}, chunk  # hush.mp4's grey shot and red square
        [(path, why)] = s.failed
        assert Path(path).name == "quiet.mp4" and "silent or missing sound track" in why and "\n" not in why
