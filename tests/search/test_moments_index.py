"""Videos and long recordings through `index` (avsearch/indexing/moments.py), with the test-only FAKE
encoder: each video's frames (image table) and sound segments (audio table) and a long recording's
segments are rows with start/end, found, replaced and deleted together; bad videos are one line each."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avsearch.indexing.pipeline import index_folder
from avsearch.store.index import Index
from avsearch.store.table_schema import NATIVE, split_ref
from avsearch.store.tables import MediaStore
from tests.media.videos import make_video
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_image

LONG_RATE = 16_000


def write_long_recording(path: Path, seconds: float = 300.0, event: tuple[float, float] = (100.0, 104.0)) -> Path:
    """A quiet recording (faint noise) with one 440 Hz tone during `event`."""
    t = np.arange(int(seconds * LONG_RATE)) / LONG_RATE
    wave = (0.002 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    on = (t >= event[0]) & (t < event[1])
    wave[on] += 0.5 * np.sin(2 * np.pi * 440 * t[on]).astype(np.float32)
    sf.write(path, wave, LONG_RATE, subtype="PCM_16")
    return path


def _moments(store: MediaStore, modality: str) -> dict[str, list[tuple[float | None, float | None]]]:
    out: dict[str, list] = {}
    for ref in store.vectors(modality, NATIVE)[0]:
        path, start, end = split_ref(ref)
        out.setdefault(Path(path).name, []).append((start, end))
    return {name: sorted(spans, key=lambda s: s[0] or 0.0) for name, spans in out.items()}


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    make_video(root / "walk.mp4")  # 40 s: red square 12-18 s, tone 30-35 s
    make_video(root / "film.mp4", seconds=6, audio=False, square=(2, 4))  # no sound stream: frames only
    make_video(root / "radio.mp4", seconds=12, video=False, tone=(3, 5))  # no video stream: its sound only
    write_image(root / "pic.png", seed=1)
    write_long_recording(root / "field.wav", seconds=60.0)
    (root / "notes.mp4").write_text("not a film\n")
    (root / "empty.mov").touch()
    data = (root / "walk.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 3])
    shutil.copy(root / "pic.png", root / "picture.mp4")  # a picture named .mp4: indexed as the picture it is
    return root


def test_videos_and_long_recordings_become_moment_rows(folder, bridge_file, tmp_path) -> None:
    index = tmp_path / "index"
    loader = FakeLoader()
    s = index_folder(folder, index, bridge_file, encoder_loader=loader)
    failed = {Path(p).name: why for p, why in s.failed}
    assert failed == {
        "notes.mp4": "not a .mp4 video: it holds text",
        "empty.mov": "empty file (0 bytes)",
        "cut.mp4": failed["cut.mp4"],
    }
    assert "truncated" in failed["cut.mp4"] and "\n" not in failed["cut.mp4"]
    assert s.added == 6  # walk, film, radio, pic, picture.mp4, field.wav: a video counts once
    store = MediaStore(index)
    frames, sounds = _moments(store, "image"), _moments(store, "audio")
    # frames: ~1 fps, the static shots collapsed into one row each, the square's range within one step
    assert frames["walk.mp4"] == [(0.0, 12.0), (12.0, 18.0), (18.0, 40.0)]
    assert frames["film.mp4"] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
    assert frames["pic.png"] == frames["picture.mp4"] == [(None, None)]  # plain files: one row, no times
    assert "radio.mp4" not in frames and "film.mp4" not in sounds
    # sound: 10 s windows every 5 s, the last one ending at the end
    # (AAC's padding makes the track 40.008 s: the last window moves to its end, no near-copy is added)
    assert [round(s) for s, _ in sounds["walk.mp4"]] == list(range(0, 31, 5))
    assert sounds["walk.mp4"][-1][1] == pytest.approx(40.0, abs=0.05)
    assert [(round(s), round(e)) for s, e in sounds["radio.mp4"]] == [(0, 10), (2, 12)]
    assert sounds["field.wav"] == [(float(a), float(a + 10)) for a in range(0, 51, 5)]
    assert s.counts == {"image": 8, "audio": 20}
    walk = str(folder / "walk.mp4")  # a video's rows carry its header's facts, as a picture's or a sound's do
    frame_info, sound_info = store.bookkeeping("image")[walk].meta.info, store.bookkeeping("audio")[walk].meta.info
    assert (frame_info.width, frame_info.height, sound_info.sample_rate) == (64, 48, 44_100)
    assert frame_info.duration == pytest.approx(40.0, abs=0.1) and sound_info.width is None
    described = {m.modality: (m.files, m.moments) for m in Index.open(index).describe().modalities}
    assert described == {"image": (4, 6), "audio": (3, 20)}  # `avsearch info`: files, and moments among rows

    # Nothing changed: nothing is read or written, the same failures listed.
    versions = {m: store.version(m) for m in ("image", "audio")}
    before = loader.files_encoded
    again = index_folder(folder, index, encoder_loader=loader)
    assert loader.files_encoded == before and again.added == 0 and again.unchanged == 6
    assert sorted(again.failed) == sorted(s.failed)
    assert {m: store.version(m) for m in ("image", "audio")} == versions

    # Changed (shorter, no square), renamed, deleted: a file's moments move and go together.
    make_video(folder / "walk.mp4", seconds=20, square=None, tone=(3, 4))
    (folder / "film.mp4").rename(folder / "reel.mp4")
    (folder / "radio.mp4").unlink()
    before = loader.files_encoded
    third = index_folder(folder, index, encoder_loader=loader)
    assert (third.added, third.renamed, third.removed) == (1, 1, 1)
    frames, sounds = _moments(store, "image"), _moments(store, "audio")
    assert frames["walk.mp4"] == [(0.0, 20.0)] and [round(s) for s, _ in sounds["walk.mp4"]] == [0, 5, 10]
    assert loader.files_encoded - before == 1 + 3  # the changed video's one frame row and 3 segments
    assert frames["reel.mp4"] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)] and "film.mp4" not in frames
    assert "radio.mp4" not in sounds
    assert third.counts == {"image": 6, "audio": 14}


def test_a_long_recording_that_becomes_short_keeps_one_row(tmp_path, bridge_file) -> None:
    root = tmp_path / "media"
    root.mkdir()
    path = write_long_recording(root / "take.wav", seconds=25.0, event=(12.0, 13.0))
    index = tmp_path / "index"
    loader = FakeLoader()
    index_folder(root, index, bridge_file, encoder_loader=loader)
    store = MediaStore(index)
    assert _moments(store, "audio")["take.wav"] == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (15.0, 25.0)]
    write_long_recording(path, seconds=4.0, event=(1.0, 2.0))
    os.utime(path, ns=(10**18, 10**18))
    index_folder(root, index, encoder_loader=loader)
    assert _moments(store, "audio") == {"take.wav": [(None, None)]}


def test_an_index_made_before_moments_takes_videos_without_rebuild(tmp_path, bridge_file) -> None:
    import lance

    root = tmp_path / "media"
    root.mkdir()
    write_image(root / "pic.png", seed=1)
    write_long_recording(root / "take.wav", seconds=8.0, event=(1.0, 2.0))
    index = tmp_path / "index"
    loader = FakeLoader()
    index_folder(root, index, bridge_file, encoder_loader=loader)
    for table in ("image", "audio"):  # the layout of an index made before moments
        lance.dataset(index / "tables" / f"{table}.lance").drop_columns(["file_key", "start", "end"])
    store = MediaStore(index)
    assert not store.has_moments("image") and not store.has_moments("audio")
    make_video(root / "walk.mp4", seconds=12, square=(4, 6), tone=(1, 2))
    before = loader.files_encoded
    s = index_folder(root, index, encoder_loader=loader)
    assert s.failed == [] and s.added == 1 and s.unchanged == 2
    assert loader.files_encoded - before == 3 + 2  # the video's 3 frame rows and 2 segments: nothing re-embedded
    assert _moments(store, "image") == {"pic.png": [(None, None)], "walk.mp4": [(0.0, 4.0), (4.0, 6.0), (6.0, 12.0)]}
    assert _moments(store, "audio")["take.wav"] == [(None, None)] and len(_moments(store, "audio")["walk.mp4"]) == 2


def test_a_video_cut_off_between_its_two_tables_is_completed(tmp_path, bridge_file) -> None:
    root = tmp_path / "media"
    root.mkdir()
    video = make_video(root / "walk.mp4", seconds=12, square=(4, 6), tone=(1, 2))
    make_video(root / "hush.mp4", seconds=6, square=None, tone=None)  # a sound track of silence: no audio rows
    index = tmp_path / "index"
    loader = FakeLoader()
    index_folder(root, index, bridge_file, encoder_loader=loader)
    store = MediaStore(index)
    frames = _moments(store, "image")["walk.mp4"]
    store.delete("image", [str(video)])  # as a kill -9 after the audio table's commit, before the image table's
    before = loader.files_encoded
    s = index_folder(root, index, encoder_loader=loader)
    assert _moments(store, "image")["walk.mp4"] == frames and s.failed == []
    assert loader.files_encoded - before == len(frames)  # the frames only: its sound is not embedded again
    versions = {m: store.version(m) for m in ("image", "audio")}
    again = index_folder(root, index, encoder_loader=loader)
    assert again.added == 0 and {m: store.version(m) for m in ("image", "audio")} == versions
    assert "hush.mp4" not in _moments(store, "audio")
