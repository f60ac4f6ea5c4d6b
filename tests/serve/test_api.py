"""The HTTP API of `avsearch serve` through FastAPI's TestClient, on an index made with the test-only FAKE
encoder (tests/search/fake_encoder.py: real decoders, not a model; see conftest.py)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from PIL import Image

from avsearch import __version__
from avsearch.errors import DecodeError
from avsearch.indexing.pipeline import index_folder
from avsearch.media.failures import NOT_MEDIA
from avsearch.search.engine import SearchEngine
from avsearch.serve import app as app_module
from avsearch.serve.items import find_item
from avsearch.store.index import Index
from tests.search.fake_encoder import FakeLoader
from tests.serve.conftest import UPLOAD_LIMIT, Library

# -- info, search ------------------------------------------------------------------------------------------


def test_info_describes_the_index(client: TestClient, library: Library) -> None:
    body = client.get("/api/info").json()
    assert body["version"] == __version__
    counts = {m["modality"]: m["files"] for m in body["modalities"]}
    assert counts == {"image": len(library.images), "audio": len(library.sounds), "pointcloud": len(library.clouds)}
    assert set(body["manifest"]["bridges"]) == {"audio_visual", "pointcloud_text"}
    assert body["server"]["max_upload_bytes"] == UPLOAD_LIMIT


def test_text_search_one_result_set_per_target(client: TestClient, library: Library) -> None:
    r = client.get("/api/search", params={"text": "a dog barks", "k": 2})
    assert r.status_code == 200
    body = r.json()
    assert body["query"] == {"text": "a dog barks", "k": 2, "target": "all", "where": None, "glob": None}
    assert sorted(rs["target"] for rs in body["results"]) == ["audio", "image", "pointcloud"]
    for rs in body["results"]:
        assert [h["rank"] for h in rs["hits"]] == [1, 2]
        for hit in rs["hits"]:
            assert set(hit) >= {"rank", "id", "path", "modality", "score", "size", "mtime_ns"}
            assert hit["id"] == library.id(Path(hit["path"]))


def test_text_search_target_and_glob(client: TestClient, library: Library) -> None:
    r = client.get("/api/search", params={"text": "x", "k": 10, "target": "image", "glob": "*/pic1.*"})
    [rs] = r.json()["results"]
    assert rs["target"] == "image"
    assert [h["path"] for h in rs["hits"]] == [str(library.images[1])]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"text": "x", "k": 0}, "k must be between 1 and"),
        ({"text": "x", "k": 100000}, "k must be between 1 and"),
        ({"text": "x", "k": "ten"}, "k: Input should be a valid integer"),
        ({"text": "x", "target": "video"}, "unknown target 'video'"),
        ({"text": "   "}, "the query text is empty"),
        ({}, "text: Field required"),
        ({"text": "x" * 5000}, "longer than"),
    ],
)
def test_bad_search_parameters_are_400(client: TestClient, params: dict, reason: str) -> None:
    r = client.get("/api/search", params=params)
    assert r.status_code == 400
    assert reason in r.json()["error"]


def test_where_filters_reach_the_engine(client: TestClient) -> None:
    assert client.get("/api/info").json()["server"]["where"] is True
    for where, hits in (("duration > 1", 0), ("duration < 1", 3)):  # every tone lasts 0.25 s
        r = client.get("/api/search", params={"text": "x", "target": "audio", "where": where})
        assert r.status_code == 200 and r.json()["query"]["where"] == where
        assert len(r.json()["results"][0]["hits"]) == hits
    r = client.get("/api/search", params={"text": "x", "where": "duration >"})
    assert r.status_code == 400 and r.json()["error"].startswith("filter 'duration >'")


# -- uploads -----------------------------------------------------------------------------------------------


def _post(client: TestClient, name: str, data: bytes, **fields: str):  # noqa: ANN202 - httpx.Response
    return client.post("/api/search", files={"file": (name, data)}, data=fields)


def test_upload_kind_comes_from_the_content_not_the_name(client: TestClient, library: Library) -> None:
    picture = library.images[0]
    r = _post(client, "recording.wav", picture.read_bytes(), k="1", target="image")
    assert r.status_code == 200
    body = r.json()
    assert body["query"]["modality"] == "image" and body["query"]["file"] == "recording.wav"
    assert [r["query"] for r in body["results"]] == ["recording.wav"]  # not the server's temporary copy
    assert [h["path"] for h in body["results"][0]["hits"]] == [str(picture)]  # same content, same vector


def test_audio_upload_finds_its_own_sound_first(client: TestClient, library: Library) -> None:
    sound = library.sounds[2]
    body = _post(client, "clip", sound.read_bytes(), k="2").json()
    assert body["query"]["modality"] == "audio"
    first = body["results"][0]
    assert first["target"] == "audio" and first["hits"][0]["path"] == str(sound)


def test_corrupt_upload_gives_the_cli_reason_with_the_upload_name(
    client: TestClient, library: Library, tmp_path: Path
) -> None:
    truncated = tmp_path / "broken.png"
    truncated.write_bytes(library.images[0].read_bytes()[:60])  # pic0.png: the signature, then nothing
    with pytest.raises(DecodeError) as cli:  # what `avsearch query --image broken.png` prints
        SearchEngine(Index.open(library.index, encoder_loader=FakeLoader())).search_file(truncated, target="image")
    r = _post(client, "broken.png", truncated.read_bytes())
    assert r.status_code == 400
    assert r.json()["error"] == str(cli.value).replace(str(truncated), "broken.png")
    assert "avsearch-upload-" not in r.json()["error"]


def test_text_named_wav_is_not_media(client: TestClient) -> None:
    r = _post(client, "notes.wav", b"meeting notes: buy milk\n" * 20)
    assert (r.status_code, r.json()) == (415, {"error": f"notes.wav: {NOT_MEDIA}"})


def test_empty_and_missing_uploads(client: TestClient) -> None:
    assert _post(client, "empty.jpg", b"").status_code == 415
    r = client.post("/api/search", data={"k": "3"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["error"]
    r = client.post("/api/search", files={"other": ("a.png", b"123")})
    assert r.status_code == 400 and "no `file` field" in r.json()["error"]
    r = _post(client, "a.wav", b"RIFF", k="many")
    assert r.status_code == 400 and r.json()["error"].startswith("k:")


def test_oversized_upload_is_413(client: TestClient) -> None:
    r = _post(client, "big.wav", b"\0" * (UPLOAD_LIMIT + 1))
    assert r.status_code == 413
    assert "limit of 262,144 bytes" in r.json()["error"]


def test_upload_temporary_files_are_always_deleted(
    client: TestClient, library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert _post(client, "ok.wav", library.sounds[0].read_bytes()).status_code == 200
    assert _post(client, "bad.png", library.images[2].read_bytes()[:60]).status_code == 400
    assert _post(client, "text", b"hello").status_code == 415
    assert _post(client, "big", b"\1" * (UPLOAD_LIMIT + 10)).status_code == 413
    assert list(tmp_path.iterdir()) == []


# -- items -------------------------------------------------------------------------------------------------


def test_item_json(client: TestClient, library: Library) -> None:
    sound = library.sounds[0]
    body = client.get(f"/api/items/{library.id(sound)}").json()
    assert body["id"] == library.id(sound)
    assert (body["path"], body["name"], body["modality"]) == (str(sound), sound.name, "audio")
    assert (body["size"], body["mtime_ns"]) == (sound.stat().st_size, sound.stat().st_mtime_ns)
    assert not {"hash", "encoder", "bridge"} & set(body)  # how a row was made is not the item's description


def test_similar_leaves_the_item_out_of_its_own_list(client: TestClient, library: Library) -> None:
    item = library.images[1]
    r = client.get(f"/api/items/{library.id(item)}/similar", params={"k": 10, "target": "image"})
    assert r.status_code == 200
    body = r.json()
    assert body["query"]["id"] == library.id(item) and body["query"]["modality"] == "image"
    paths = [h["path"] for h in body["results"][0]["hits"]]
    assert str(item) not in paths and len(paths) == len(library.images) - 1


def test_media_content_type_is_from_the_content(client: TestClient, library: Library) -> None:
    png_named_wav = library.images[-1]
    r = client.get(f"/api/items/{library.id(png_named_wav)}/media")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == png_named_wav.read_bytes()
    r = client.get(f"/api/items/{library.id(library.sounds[0])}/media")
    assert r.headers["content-type"] == "audio/wav"


def test_media_range_request_is_206_with_exact_bytes(client: TestClient, library: Library) -> None:
    sound = library.sounds[1]
    data = sound.read_bytes()
    r = client.get(f"/api/items/{library.id(sound)}/media", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert r.content == data[100:200]
    r = client.get(f"/api/items/{library.id(sound)}/media", headers={"Range": "bytes=-10"})
    assert (r.status_code, r.content) == (206, data[-10:])


def test_thumbnails_of_pictures_and_point_clouds(client: TestClient, library: Library) -> None:
    big = library.images[-1]  # 150 x 300
    r = client.get(f"/api/items/{library.id(big)}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (128, 256)
    r = client.get(f"/api/items/{library.id(library.clouds[0])}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    drawn = Image.open(io.BytesIO(r.content)).convert("L")
    assert drawn.size == (256, 256) and drawn.getextrema()[0] < 128  # points drawn on white
    # sounds: their waveform, so two sounds look different
    waves = [client.get(f"/api/items/{library.id(s)}/thumbnail") for s in library.sounds[:2]]
    assert all(w.status_code == 200 and w.headers["content-type"] == "image/jpeg" for w in waves)
    drawn = [np.asarray(Image.open(io.BytesIO(w.content)).convert("L"), np.float32) for w in waves]
    assert drawn[0].shape == (128, 256) and drawn[0].min() < 128  # ink on white
    assert np.abs(drawn[0] - drawn[1]).mean() > 2.0  # two different sounds, two different pictures


def test_thumbnail_made_once_and_remade_when_the_file_changes(own_library: Library, bridges: list[Path]) -> None:
    app = app_module.create_app(own_library.index, encoder_loader=FakeLoader(), reload_interval=0)
    thumbs = app.state.thumbnails
    picture = own_library.images[0]
    url = f"/api/items/{own_library.id(picture)}/thumbnail"
    with TestClient(app) as c:
        first = c.get(url).content
        [cached] = list(thumbs.folder.rglob("*.jpg"))
        made = cached.stat().st_mtime_ns
        assert c.get(url).content == first and thumbs.rendered == 1
        assert cached.stat().st_mtime_ns == made
        Image.new("RGB", (40, 20), (200, 10, 10)).save(picture, format="PNG")  # the file changes on disk
        stale = c.get(url)  # no longer the file indexed: not decoded until it is indexed again
        assert stale.status_code == 409 and "changed since it was indexed" in stale.json()["error"]
        assert thumbs.rendered == 1
        index_folder(own_library.root, own_library.index, bridges, encoder_loader=FakeLoader())
        changed = c.get(url)
        assert thumbs.rendered == 2 and changed.content != first
        assert Image.open(io.BytesIO(changed.content)).size == (40, 20)
        assert not cached.exists() and len(list(thumbs.folder.rglob("*.jpg"))) == 1


def test_media_of_a_deleted_file_is_404(own_library: Library) -> None:
    gone = own_library.sounds[0]
    gone.unlink()
    with TestClient(app_module.create_app(own_library.index, encoder_loader=FakeLoader())) as c:
        r = c.get(f"/api/items/{own_library.id(gone)}/media")
    assert r.status_code == 404 and "not on disk" in r.json()["error"]


# -- hostile ids -------------------------------------------------------------------------------------------

ENDPOINTS = ("", "/media", "/thumbnail", "/similar")


def _hostile_ids(library: Library) -> list[str]:
    real = library.id(library.sounds[0])
    return [
        "../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "%252e%252e%252fetc%252fpasswd",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        quote(str(library.sounds[0]), safe=""),  # a real item's path: ids only, never paths
        quote(library.sounds[0].name),
        "0" * 32,  # the right form, no such item
        real.upper(),
        real + "%00",
        "%00",
        real[:31],
        real + "0",
        "..",
        ".",
        "~",
        "%5C..%5C..%5Cetc%5Cpasswd",
    ]


def raw_get(app: FastAPI, target: str) -> tuple[int, bytes]:
    """GET a request target exactly as written, the way a server hands it to the app (uvicorn: `path` is the
    percent-decoded target, `raw_path` the bytes): httpx, under TestClient, would first resolve `../` and `./`
    segments, so "/api/items/../../etc/passwd" would arrive as "/etc/passwd". (status, body)"""
    raw_path, _, query = target.partition("?")
    replies: list[dict] = []
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(60)  # the client stays: a file response waits here for a disconnect until it is sent
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        replies.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("ascii"),
        "query_string": query.encode("ascii"),
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1234),
        "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in replies if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in replies if m["type"] == "http.response.body")


def test_raw_get_sends_dot_segments_as_written() -> None:
    echo = FastAPI()

    @echo.get("/{rest:path}")
    def path(rest: str, request: Request) -> dict:
        return {"path": request.scope["path"]}

    assert json.loads(raw_get(echo, "/api/items/../../etc/passwd")[1]) == {"path": "/api/items/../../etc/passwd"}
    assert json.loads(raw_get(echo, "/api/items/./x/%2e%2e/media")[1]) == {"path": "/api/items/./x/../media"}
    with TestClient(echo) as c:  # what the TestClient would have sent instead
        assert c.get("/api/items/../../etc/passwd").json() == {"path": "/etc/passwd"}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_hostile_ids_are_404_and_read_no_file(
    client: TestClient, library: Library, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = client.app.state.live.current().index.tables
    asked: list[str] = []
    fetch = tables.fetch
    monkeypatch.setattr(tables, "fetch", lambda modality, ids: asked.extend(ids) or fetch(modality, ids))
    for hostile in _hostile_ids(library):
        status, body = raw_get(client.app, f"/api/items/{hostile}{endpoint}")
        assert status in (404, 405), (hostile, status)
        assert set(json.loads(body)) == {"error"}, hostile
        assert b"root:" not in body and b"RIFF" not in body, hostile
    assert set(asked) == {"0" * 32}  # only an id of the right form is ever looked up


def test_items_are_found_by_id_never_by_path(library: Library) -> None:
    index = Index.open(library.index, encoder_loader=FakeLoader())
    path = library.sounds[0]
    assert index.tables.fetch("audio", [str(path)])[0]  # the store finds a row by its path...
    assert find_item(index, str(path)) is None  # ...the server never asks it to
    assert find_item(index, library.id(path).upper()) is None
    assert find_item(index, library.id(path)) == ("audio", index.tables.fetch("audio", [str(path)])[0][0])


def test_hostile_requests_never_500(client: TestClient, library: Library) -> None:
    """A sweep of odd requests: each gets a JSON error or an answer, never a server error."""
    real = library.id(library.images[0])
    requests = [
        ("GET", "/api/search?text=%00&k=1", None),
        ("GET", "/api/search?text=a&k=-1", None),
        ("GET", "/api/search?text=a&k=1.5", None),
        ("GET", "/api/search?text=a&glob=[", None),
        ("GET", "/api/search?text=a&glob=" + "*" * 3000, None),
        ("GET", "/api/search?text=a&target=../../etc", None),
        ("GET", f"/api/items/{real}/similar?k=0", None),
        ("GET", f"/api/items/{real}/similar?target=text", None),
        ("GET", "/static/" + "../" * 16 + "etc/passwd", None),  # deep enough to reach / from any install
        ("GET", "/static/" + "%2e%2e/" * 16 + "etc/passwd", None),
        ("GET", "/static/" + "..%2F" * 16 + "etc/passwd", None),
        ("GET", "/nowhere", None),
        ("DELETE", f"/api/items/{real}", None),
        ("POST", "/api/search", {"content": b"--xx\r\n", "headers": {"content-type": "multipart/form-data"}}),
        (
            "POST",
            "/api/search",
            {"content": b"garbage", "headers": {"content-type": "multipart/form-data; boundary=b"}},
        ),
        ("POST", "/api/search", {"content": b"{}", "headers": {"content-type": "application/json"}}),
    ]
    for method, url, extra in requests:
        if method == "GET":  # as written: ../ and %2e%2e/ reach the server unresolved
            status, body = raw_get(client.app, url)
        else:
            r = client.request(method, url, **(extra or {}))
            status, body = r.status_code, r.content
        assert status < 500, (url, status, body)
        assert b"root:" not in body, url
        if status >= 400:
            assert set(json.loads(body)) == {"error"}, url


# -- pages -------------------------------------------------------------------------------------------------


def test_openapi_docs_and_gallery(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/info", "/api/search", "/api/items/{item_id}", "/api/items/{item_id}/media"} <= set(paths)
    assert "multipart/form-data" in paths["/api/search"]["post"]["requestBody"]["content"]
    page = client.get("/")  # the gallery ships with avsearch
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.content == (app_module.STATIC_DIR / "index.html").read_bytes()


def test_a_missing_gallery_is_404_and_the_api_still_answers(library: Library, tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()  # an installation whose static files are gone
    app = app_module.create_app(library.index, encoder_loader=FakeLoader(), static_dir=tmp_path / "static")
    with TestClient(app) as c:
        page = c.get("/")
        assert page.status_code == 404 and page.json() == {
            "error": "the web gallery is not installed (avsearch/serve/static/index.html); the API is at /api"
        }
        assert c.get("/api/info").status_code == 200
