"""/api/localize and /api/match over a real index: the real CLIP and CLAP architectures with random weights
and the test-only controlled bridge of tests/localize/synthetic.py (its CLAP head maps sound k onto patch
k's CLIP vector), so the right box is known without trusting the code under test."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from avsearch.indexing.pipeline import index_folder
from avsearch.serve.app import create_app
from avsearch.store.table_schema import moment_key, path_key
from tests.localize.synthetic import World, build_world, link_av_weights

pytestmark = pytest.mark.slow  # loads CLIP and CLAP (random weights), indexes 12 files, embeds crops


@pytest.fixture(scope="module")
def served(av_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, World]:
    root = tmp_path_factory.mktemp("serve-localize")
    world = build_world(root / "media", link_av_weights(av_weights_dir, root / "weights"), n_patches=3)
    _film(world.scenes[1], root / "media" / "film.mp4")
    index_folder(root / "media", root / "index", [world.weights / "clap_clip.pt"], weights_dir=world.weights)
    app = create_app(root / "index", weights_dir=world.weights, device="cpu")
    return TestClient(app), world


FILM_SCENE_AT = 2.0  # seconds into film.mp4 at which scene 1 comes on screen (a grey shot before it)


def _film(scene: Path, out: Path) -> Path:
    """A silent 5 s video: a grey shot, then the scene from FILM_SCENE_AT on (H.264, nearly lossless)."""
    import av

    shown = np.asarray(Image.open(scene).convert("RGB"))
    grey = np.full_like(shown, 120)
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = shown.shape[1], shown.shape[0], "yuv444p"
        stream.options = {"preset": "ultrafast", "crf": "4"}
        for i in range(50):
            frame = av.VideoFrame.from_ndarray(shown if i / 10 >= FILM_SCENE_AT else grey, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


def _id(path: Path) -> str:
    return path_key(str(path.absolute()))


def _centre_in(box: list[float], target: tuple[int, int, int, int]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return target[0] <= cx <= target[2] and target[1] <= cy <= target[3]


def test_localize_an_indexed_sound_and_an_uploaded_one(served) -> None:
    client, world = served
    scene, placed = world.scenes[1], world.placements[1]  # scene 1 holds patches 1 and 2
    for k in placed:
        answer = client.get("/api/localize", params={"audio_id": _id(world.sounds[k]), "image_id": _id(scene)})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert _centre_in(body["best"]["box"], placed[k]), (k, body["best"])
        assert body["image"] == scene.name and body["audio"] == world.sounds[k].name
        assert str(scene.parent) not in answer.text  # names, not the server's paths
        overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay"].split(",", 1)[1])))
        assert overlay.format == "PNG" and max(overlay.size) <= 512
    with world.sounds[2].open("rb") as sound:
        upload = client.post(
            "/api/localize", files={"file": ("dog.wav", sound)}, data={"image_id": _id(scene), "top": "3"}
        )
    assert upload.status_code == 200, upload.text
    assert _centre_in(upload.json()["best"]["box"], placed[2]) and len(upload.json()["proposals"]) == 3
    assert upload.json()["audio"] == "dog.wav"


def test_match_ranks_true_pairs_above_shuffled_ones(served) -> None:
    client, world = served

    def confidence(k: int, s: int) -> float:
        answer = client.get("/api/match", params={"audio_id": _id(world.sounds[k]), "image_id": _id(world.scenes[s])})
        assert answer.status_code == 200, answer.text
        return answer.json()["confidence"]

    true = [confidence(k, s) for s, placed in enumerate(world.placements) for k in placed]
    false = [confidence(k, s) for s, placed in enumerate(world.placements) for k in range(3) if k not in placed]
    assert min(true) > max(false)


def test_localize_refuses_wrong_kinds_and_ids(served) -> None:
    client, world = served
    scene, sound = _id(world.scenes[0]), _id(world.sounds[0])
    cases = [
        ({"audio_id": scene, "image_id": scene}, 400, "audio_id names a image item"),
        ({"audio_id": sound, "image_id": sound}, 400, "image_id names a audio item"),
        ({"audio_id": sound, "image_id": "0" * 32}, 404, "unknown item id"),
        ({"audio_id": "../../etc/passwd", "image_id": scene}, 404, "unknown item id"),
        ({"audio_id": sound, "image_id": scene, "heat": "hot"}, 400, "heat must be"),
    ]
    for params, status, words in cases:
        answer = client.get("/api/localize", params=params)
        assert answer.status_code == status and words in answer.json()["error"], (params, answer.text)
    with world.scenes[0].open("rb") as picture:  # a picture where the sound should be: by content
        answer = client.post("/api/match", files={"file": ("a.wav", picture)}, data={"image_id": scene})
    assert answer.status_code == 400 and "a.wav" in answer.json()["error"] and "takes a sound" in answer.json()["error"]


def test_where_is_it_on_a_video_frame(served) -> None:
    """A video's frame (a moment of the image table) is localised on the frame on screen at the moment's
    start: film.mp4 shows scene 1 from 2 s (a grey shot before), so a sound is found where scene 1 holds
    its patch. One sound only: each localisation embeds every proposal's crop (about 20 s here)."""
    client, world = served
    film = world.scenes[1].parent / "film.mp4"
    frame_id = moment_key(str(film.absolute()), FILM_SCENE_AT, "image")
    k, box = next(iter(world.placements[1].items()))
    answer = client.get("/api/localize", params={"audio_id": _id(world.sounds[k]), "image_id": frame_id})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert _centre_in(body["best"]["box"], box), (k, body["best"])
    assert (body["image"], body["start"], body["image_id"]) == ("film.mp4", FILM_SCENE_AT, frame_id)
