"""Bad and odd videos as QUERIES (issue 27): `avsearch query --video X`, `--audio X.mp4` and the server's
upload search. Each bad one is one line naming the file and the reason (CLI exit code 1, as for any bad
query file; the server a 4xx JSON reason, never a 500); the odd but good ones (a sound in an .mp4, a silent
film, a silent sound track, variable frame rate, a rotated phone video, 4K and 8K frames) query with what
they hold. Test-only FAKE encoder (avsearch's real decoders, no model), a two-file index."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.indexing.pipeline import index_folder
from avsearch.serve.app import create_app
from tests.media.videos import GREY, RED, encode_frames, jpeg_video, make_video, unknown_codec, vfr_video
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_audio, write_image


def _rotated(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(90)
        encode_frames(out, stream, [np.full((48, 64, 3), GREY, np.uint8)] * 10)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory, bridge_file: Path) -> dict[str, Path]:
    """The query files (3 s videos unless said), and an index of one picture and one sound to search."""
    root = tmp_path_factory.mktemp("bad_video_queries")
    (root / "media").mkdir()
    write_image(root / "media" / "a.png", 1, 32)
    write_audio(root / "media" / "b.wav", 2)
    index_folder(root / "media", root / "index", bridge_file, encoder_loader=FakeLoader())
    q = root / "queries"
    q.mkdir()
    good = make_video(q / "good.mp4", seconds=3, square=(1, 2), tone=(1, 2))
    data = good.read_bytes()
    (q / "empty.mp4").write_bytes(b"")
    (q / "truncated.mp4").write_bytes(data[: len(data) // 2])  # its index (moov, written last) cut off
    noise = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)
    (q / "corrupt.mp4").write_bytes(data[:32] + bytes(noise))  # a header that starts right, then noise
    (q / "notes.mp4").write_text("These are my holiday notes, not a video.\n" * 20)
    Image.new("RGB", (32, 32), RED).save(q / "picture.mp4", format="PNG")
    files = {p.stem: p for p in q.iterdir()}
    files["nocodec"] = unknown_codec(good, q / "nocodec.mp4")
    files["sound_only"] = make_video(q / "sound_only.mp4", seconds=3, video=False, tone=(1, 2))
    files["silent_film"] = make_video(q / "silent_film.mp4", seconds=3, audio=False)
    files["hush"] = make_video(q / "hush.mp4", seconds=3, tone=None)  # a sound track of silence
    files["vfr"] = vfr_video(q / "vfr.mp4", [0, 100, 150, 900, 1000, 2500, 2990], red=(900, 2500))
    files["rotated"] = _rotated(q / "rotated.mp4")
    files["uhd"] = jpeg_video(q / "uhd.avi", (3840, 2160))
    files["8k"] = jpeg_video(q / "8k.avi", (7680, 4320))
    files["index"] = root / "index"
    return files


@pytest.fixture(scope="module")
def cli(videos: dict[str, Path]) -> Iterator[CliRunner]:
    import avsearch.encoders.registry as registry

    fake = FakeLoader()
    with pytest.MonkeyPatch.context() as mp:  # the CLI reaches its models through this function
        mp.setattr(registry, "load_encoder", lambda name, towers, weights_dir=None, device=None: fake(name, towers))
        yield CliRunner()


@pytest.fixture(scope="module")
def server(videos: dict[str, Path]) -> Iterator[TestClient]:
    with TestClient(create_app(videos["index"], encoder_loader=FakeLoader(), reload_interval=0)) as client:
        yield client


def _query(cli: CliRunner, videos: dict[str, Path], name: str, *flags: str):  # noqa: ANN202 - click Result
    args = ["query", flags[0], str(videos[name]), *flags[1:], "--json", "--index-dir", str(videos["index"])]
    return cli.invoke(app, args)


BAD = [
    ("empty", ("--video",), "empty file (0 bytes)"),
    ("truncated", ("--video",), "truncated or corrupt video"),
    ("truncated", ("--audio",), "truncated or corrupt video"),
    ("corrupt", ("--video",), "truncated or corrupt video"),
    ("nocodec", ("--video",), "its video codec has no decoder"),
    ("nocodec", ("--audio",), "its video codec has no decoder"),
    ("notes", ("--video",), "it holds text"),
    ("notes", ("--audio",), "it holds text"),
    ("picture", ("--video",), "by its content it is a picture"),
    ("picture", ("--audio",), "by its content it is a picture"),
    ("silent_film", ("--audio",), "holds no sound"),
    ("sound_only", ("--video", "--from", "frames"), "holds no pictures"),
    ("hush", ("--audio",), "sound track is silent"),
    ("hush", ("--video", "--from", "audio"), "sound track is silent"),
]


@pytest.mark.parametrize(("name", "flags", "words"), BAD, ids=[f"{n}{f[0]}{len(f)}" for n, f, _ in BAD])
def test_a_bad_video_query_is_one_line(cli, videos, name, flags, words) -> None:
    result = _query(cli, videos, name, *flags)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output  # no traceback
    assert result.stdout == ""
    assert result.stderr.startswith(f"avsearch: error: {videos[name]}: "), result.stderr  # the file, then why
    assert words in result.stderr and result.stderr.count("\n") == 1, result.stderr


GOOD = [
    ("good", ("--video",), ["image", "audio"]),
    ("good", ("--audio",), ["audio"]),  # a video as --audio: its sound track
    ("good", ("--image",), ["image"]),  # as --image: its frames
    ("sound_only", ("--video",), ["audio"]),
    ("sound_only", ("--audio",), ["audio"]),
    ("silent_film", ("--video",), ["image"]),
    ("hush", ("--video",), ["image"]),  # its silent sound left out, its frames query
    ("vfr", ("--video",), ["image"]),
    ("rotated", ("--video",), ["image"]),
    ("uhd", ("--video",), ["image"]),
    ("8k", ("--video",), ["image"]),
]


@pytest.mark.parametrize(("name", "flags", "lists"), GOOD, ids=[f"{n}{f[0]}" for n, f, _ in GOOD])
def test_an_odd_but_good_video_queries_with_what_it_holds(cli, videos, name, flags, lists) -> None:
    result = _query(cli, videos, name, *flags, "--target", "image")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert [r["query_modality"] for r in answer] == lists
    assert all(r["hits"] for r in answer)


UPLOADS = [
    ("empty", 415, "empty.mp4: not an audio, image, video or point-cloud file"),
    ("notes", 415, "notes.mp4: not an audio, image, video or point-cloud file"),
    ("truncated", 400, "truncated.mp4: truncated or corrupt video"),
    ("corrupt", 400, "corrupt.mp4: truncated or corrupt video"),
    ("nocodec", 400, "nocodec.mp4: its video codec has no decoder"),
    ("good", 200, ["image", "audio"]),
    ("picture", 200, ["image"]),  # a PNG named .mp4 is a picture
    ("sound_only", 200, ["audio"]),
    ("silent_film", 200, ["image"]),
    ("hush", 200, ["image"]),
    ("vfr", 200, ["image"]),
    ("rotated", 200, ["image"]),
    ("8k", 200, ["image"]),
]


@pytest.mark.parametrize(("name", "status", "expected"), UPLOADS, ids=[n for n, _, _ in UPLOADS])
def test_the_server_answers_a_video_upload_with_results_or_a_reason(server, videos, name, status, expected) -> None:
    path = videos[name]
    answer = server.post(
        "/api/search", files={"file": (path.name, path.read_bytes())}, data={"k": "3", "target": "image"}
    )
    assert answer.status_code == status, answer.text
    body = answer.json()
    if status == 200:
        assert [r["query_modality"] for r in body["results"]] == expected
    else:
        assert list(body) == ["error"] and body["error"].startswith(expected) and "\n" not in body["error"]
        assert "upload" not in body["error"] and "Traceback" not in answer.text  # the client's name, not our copy
