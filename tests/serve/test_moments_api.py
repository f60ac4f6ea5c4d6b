"""The HTTP API on moments (issue 27): search results carry start/end, a video moment's thumbnail is its
frame at the moment's start, a recording's moment its stretch's waveform, and the file is served as video
with the byte ranges a browser seeks with, only while it is the file indexed.

The index is tests/serve/conftest.py's moment_library (the FAKE encoder: the test checks what the server
shows and serves, not search quality)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from avsearch.serve.app import create_app
from avsearch.store.table_schema import moment_key
from tests.media.videos import GREY, RED
from tests.search.fake_encoder import FakeLoader
from tests.serve.conftest import SQUARE_AT, MomentLibrary


@pytest.fixture(scope="module")
def client(moment_library: MomentLibrary) -> Iterator[TestClient]:
    with TestClient(create_app(moment_library.index, encoder_loader=FakeLoader(), reload_interval=0)) as c:
        yield c


def _picture(response) -> np.ndarray:  # noqa: ANN001 - httpx.Response
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), np.float32)


def test_search_results_carry_the_moments_times(client: TestClient, moment_library: MomentLibrary) -> None:
    answer = client.get("/api/search", params={"text": "a red square", "k": 10, "target": "image"}).json()
    [pictures] = answer["results"]
    ranges = {(h["path"].rsplit("/", 1)[-1], h["start"], h["end"]) for h in pictures["hits"]}
    # the grey shot, the square, the grey shot again (consecutive near-identical frames collapsed); the photo whole
    assert ranges == {
        ("walk.mp4", 0.0, 4.0),
        ("walk.mp4", 4.0, 7.0),
        ("walk.mp4", 7.0, 12.0),
        ("photo.png", None, None),
    }
    square = next(h for h in pictures["hits"] if h["start"] == SQUARE_AT[0])
    assert square["id"] == moment_key(str(moment_library.video), SQUARE_AT[0], "image")  # the moment's own id
    item = client.get(f"/api/items/{square['id']}").json()
    assert (item["start"], item["end"], item["name"]) == (4.0, 7.0, "walk.mp4")


def test_a_frame_and_a_sound_segment_starting_together_are_two_items(
    client: TestClient, moment_library: MomentLibrary
) -> None:
    """walk.mp4's first frame row and its first sound segment both start at 0 s: each has an id of its own,
    and each id names its own row (an id made of path and start alone named whichever table came first)."""
    video = str(moment_library.video)
    frame, sound = moment_key(video, 0.0, "image"), moment_key(video, 0.0, "audio")
    assert frame != sound
    assert client.get(f"/api/items/{frame}").json()["modality"] == "image"
    assert client.get(f"/api/items/{sound}").json()["modality"] == "audio"
    answer = client.get("/api/search", params={"text": "a red square", "k": 10, "target": "audio"}).json()
    ids = {h["id"] for h in answer["results"][0]["hits"] if h["path"] == video and h["start"] == 0.0}
    assert ids == {sound}  # the search names the sound segment by the sound's id


def test_a_video_moment_is_shown_as_its_frame_at_its_start(client: TestClient, moment_library: MomentLibrary) -> None:
    video = str(moment_library.video)
    square = _picture(client.get(f"/api/items/{moment_key(video, SQUARE_AT[0], 'image')}/thumbnail"))
    grey = _picture(client.get(f"/api/items/{moment_key(video, 0.0, 'image')}/thumbnail"))
    assert square.shape[:2] == grey.shape[:2] == (48, 64)  # the frame's own size (under 256 px)
    h, w = square.shape[:2]
    assert np.abs(square[h // 2, w // 2] - RED).max() < 40  # the red square, in the middle, at 4 s
    assert np.abs(grey[h // 2, w // 2] - GREY).max() < 40  # before it: the grey shot
    assert np.abs(square[2, 2] - GREY).max() < 40  # the square's frame keeps its grey border


def test_a_recording_moment_is_shown_as_its_stretch_of_waveform(
    client: TestClient, moment_library: MomentLibrary
) -> None:
    """field.wav is silent for 5 s, then a tone: its 0-10 s segment is blank on the left half, inked on the
    right; its 5-15 s segment is inked all along."""
    path = str(moment_library.recording)
    first = _picture(client.get(f"/api/items/{moment_key(path, 0.0, 'audio')}/thumbnail")).mean(axis=2)
    second = _picture(client.get(f"/api/items/{moment_key(path, 5.0, 'audio')}/thumbnail")).mean(axis=2)
    w = first.shape[1]
    inked = lambda picture, columns: float((picture[:, columns] < 128).mean())  # noqa: E731
    assert inked(first, slice(0, w // 3)) < 0.05 < 0.3 < inked(first, slice(2 * w // 3, w))
    assert inked(second, slice(0, w // 3)) > 0.3


def test_a_video_is_served_as_video_with_byte_ranges(client: TestClient, moment_library: MomentLibrary) -> None:
    data = moment_library.video.read_bytes()
    url = f"/api/items/{moment_key(str(moment_library.video), SQUARE_AT[0], 'image')}/media"
    whole = client.get(url)
    assert (whole.status_code, whole.headers["content-type"], whole.content) == (200, "video/mp4", data)
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = client.get(url, headers={"Range": "bytes=-100"})
    assert (tail.status_code, tail.content) == (206, data[-100:])
    beyond = client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"


def test_a_changed_video_is_not_served(client: TestClient, moment_library: MomentLibrary) -> None:
    """The file-serving checks of serve/files.py hold for moments: a video changed since indexing is 409
    for its media and for a thumbnail not made yet (the moment at 7 s: no test asks for it before)."""
    video = moment_library.video
    before = video.stat()
    item = moment_key(str(video), 7.0, "image")
    try:
        with video.open("ab") as f:
            f.write(b"\0" * 16)
        assert client.get(f"/api/items/{item}/media").status_code == 409
        assert client.get(f"/api/items/{item}/thumbnail").status_code == 409
    finally:
        os.truncate(video, before.st_size)
        os.utime(video, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert client.get(f"/api/items/{item}/media", headers={"Range": "bytes=0-3"}).status_code == 206
