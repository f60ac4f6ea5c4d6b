"""`write_html_report`: one query's results as a self-contained HTML page (escaped names, inline JPEG
thumbnails, audio players on file:// URLs, one section per target modality).

The index test uses the FAKE encoder loader (tests/search/fake_encoder.py: real decoders, deterministic
vectors, not a model) and a random-weight bridge, so it checks the page, not search quality.
"""

from __future__ import annotations

import base64
import io
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlparse

import numpy as np
import pytest
from PIL import Image

from avsearch.errors import InputError
from avsearch.indexing.pipeline import index_folder
from avsearch.search.engine import SearchEngine
from avsearch.search.html_report import write_html_report
from avsearch.search.results import Hit, ResultSet
from avsearch.store.index import Index
from tests.search.conftest import make_3d_bridge
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_audio, write_cloud, write_image

# What the report's own markup uses; a tag made from a file name would be something else.
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "main", "section"}
ALLOWED_TAGS |= {"ol", "li", "a", "img", "span", "audio", "video"}


class Page(HTMLParser):
    """Every start tag with its attributes, in page order."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def all(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag]

    def sections(self) -> list[tuple[str, int]]:
        """(data-target, number of result cards) per section, in page order."""
        out: list[tuple[str, int]] = []
        for tag, attrs in self.tags:
            if tag == "section":
                out.append((attrs["data-target"], 0))
            elif tag == "li" and "card" in attrs.get("class", ""):
                out[-1] = (out[-1][0], out[-1][1] + 1)
        return out


def _set(target: str, paths: list[Path], modality: str | None = None) -> ResultSet:
    hits = [Hit(i + 1, os.fsdecode(p), modality or target, 0.9 - i / 10, id=f"{i:032x}") for i, p in enumerate(paths)]
    return ResultSet("a query", "text", target, "clip", "flat", hits)


def _report(tmp_path: Path, results: list[ResultSet], label: str = "dogs") -> tuple[str, Page]:
    out = write_html_report(results, tmp_path / "out" / "report.html", label)
    text = out.read_bytes().decode("utf-8")  # strict: a raw surrogate from a file name would not encode
    return text, Page(text)


def test_hostile_names_are_escaped(tmp_path: Path) -> None:
    # "/" cannot be in a file name, so the <script> element is split over a folder and its file.
    script = write_image(tmp_path / "<script>alert(1)<" / "script>.png", 1)
    img_tag = write_image(tmp_path / "<img src=x onerror=\"alert('x')\">.png", 2)
    raw = write_image(Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9 & co.png")), 3)
    text, page = _report(tmp_path, [_set("image", [script, img_tag, raw])], label="<b>query</b>")

    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in text  # the full path, escaped, in a title
    assert "<img src=x" not in text and "&lt;img src=x onerror=&quot;alert(&#x27;x&#x27;)&quot;&gt;.png" in text
    assert "<b>" not in text and "&lt;b&gt;query&lt;/b&gt;" in text
    assert "caf\\xe9 &amp; co.png" in text  # non-UTF-8 byte shown printable
    assert {t for t, _ in page.tags} <= ALLOWED_TAGS  # no <script>, <iframe>, ... made of a name
    assert not [a for _, a in page.tags if any(k.startswith("on") for k in a)]  # no event handler attributes


def test_images_and_clouds_inline_as_small_jpegs(tmp_path: Path) -> None:
    big = write_image(tmp_path / "big.png", 5, size=400)
    small = write_image(tmp_path / "small.jpg", 6, size=24)
    cloud = write_cloud(tmp_path / "shape.npy", 0)
    _, page = _report(tmp_path, [_set("image", [big, small]), _set("pointcloud", [cloud])])

    imgs = page.all("img")
    assert len(imgs) == 3
    for attrs, source in zip(imgs, [big, small, None], strict=True):
        assert attrs["src"].startswith("data:image/jpeg;base64,")
        thumb = Image.open(io.BytesIO(base64.b64decode(attrs["src"].split(",", 1)[1])))
        assert thumb.format == "JPEG" and max(thumb.size) <= 160
        pixels = np.asarray(thumb.convert("RGB"), np.float32)
        if source is not None:  # the thumbnail is that picture: same mean colour
            original = np.asarray(Image.open(source).convert("RGB"), np.float32)
            assert np.abs(pixels.mean((0, 1)) - original.mean((0, 1))).max() < 12
        else:  # the cloud's preview has dots drawn on white
            assert (pixels.min(axis=2) < 200).mean() > 0.05
    links = [a["href"] for a in page.all("a")]
    assert links == [big.as_uri(), small.as_uri(), cloud.as_uri()]


def test_audio_players_point_at_the_files(tmp_path: Path) -> None:
    plain = write_audio(tmp_path / "sounds" / "dog #1?.wav", 1)
    odd = write_audio(Path(os.fsdecode(os.fsencode(tmp_path) + b"/r\xe9cord.wav")), 2)
    _, page = _report(tmp_path, [_set("audio", [plain, odd])])

    audios = page.all("audio")
    assert [a["preload"] for a in audios] == ["none", "none"] and all("controls" in a for a in audios)
    waves = [img for img in page.all("img") if img.get("class") == "waveform"]  # each sound drawn inline
    assert len(waves) == 2 and all(w["src"].startswith("data:image/jpeg;base64,") for w in waves)
    assert waves[0]["src"] != waves[1]["src"]
    for attrs, path in zip(audios, [plain, odd], strict=True):
        url = urlparse(attrs["src"])
        assert url.scheme == "file" and unquote_to_bytes(url.path) == os.fsencode(path)


def test_counts_per_modality_from_a_real_search(tmp_path: Path, bridge_file: Path) -> None:
    root = tmp_path / "media"
    for i in range(4):
        write_image(root / f"img{i}.png", i)
    for i in range(2):
        write_audio(root / f"snd{i}.wav", i)
    write_cloud(root / "shape.npy", 0)
    bridge3d = make_3d_bridge(tmp_path / "3d.safetensors")
    index_folder(root, tmp_path / "index", [bridge_file, bridge3d], encoder_loader=FakeLoader())
    engine = SearchEngine(Index.open(tmp_path / "index", encoder_loader=FakeLoader()))
    results = engine.search_file(root / "img0.png", "image", "all", k=3)

    text, page = _report(tmp_path, results, label="img0.png")
    assert page.sections() == [("image", 3), ("audio", 2), ("pointcloud", 1)]
    assert "Pictures (3)" in text and "Sounds (2)" in text and "Point clouds (1)" in text
    assert "6 results in 3 group(s)" in text
    shown = re.findall(r'<span class="score">([^<]*)</span>', text)
    assert shown == [f"{h.score:.3f}" for r in results for h in r.hits]


def test_unreadable_file_and_empty_results(tmp_path: Path) -> None:
    gone = tmp_path / "gone.png"  # indexed once, deleted since
    text, page = _report(tmp_path, [_set("image", [gone]), _set("audio", [])])
    assert "no preview" in text and not page.all("img")
    assert page.sections() == [("image", 1), ("audio", 0)] and "No matches." in text
    text, _ = _report(tmp_path, [])
    assert "No results." in text


def test_unwritable_destination_is_one_input_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write the HTML report"):
        write_html_report([], tmp_path / "file" / "report.html", "q")


def test_query_html_flag_writes_the_page(tmp_path: Path, bridge_file: Path) -> None:
    """`avsearch query --id ITEM --html out.html`: the page holds the same hits the table prints."""
    from typer.testing import CliRunner

    from avsearch.cli.app import app

    root = tmp_path / "media"
    for i in range(3):
        write_image(root / f"img{i}.png", i)
    write_audio(root / "snd0.wav", 0)
    index_folder(root, tmp_path / "index", [bridge_file], encoder_loader=FakeLoader())
    out = tmp_path / "page.html"
    args = ["query", "--id", str(root / "img0.png"), "--html", str(out), "--index-dir", str(tmp_path / "index")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("results page:")
    text = out.read_text("utf-8")
    assert Page(text).sections() == [("image", 2), ("audio", 1)]
    assert "img1.png" in text and "img2.png" in text and "snd0.wav" in text


def _poster(attrs: dict[str, str]) -> np.ndarray:
    assert attrs["poster"].startswith("data:image/jpeg;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(attrs["poster"].split(",", 1)[1])))
    assert picture.format == "JPEG" and max(picture.size) <= 160
    return np.asarray(picture.convert("RGB"), np.float32)


def test_moments_play_from_their_start_under_their_frame(tmp_path: Path) -> None:
    """A video moment: a <video> whose poster is the frame at the moment's start and whose src is the file
    with the media fragment #t=start,end, and the range as text; a recording's moment: its stretch of
    waveform (field.wav is silent for its first 5 s: the 0-10 s segment's left third is blank)."""
    import soundfile as sf

    from tests.media.videos import GREY, RED, make_video

    video = make_video(tmp_path / "walk #1.mp4", seconds=6.0, square=(2.0, 4.0), audio=False)
    t = np.arange(15 * 16_000) / 16_000
    recording = tmp_path / "field.wav"
    sf.write(recording, np.where(t >= 5.0, 0.3 * np.sin(2 * np.pi * 330 * t), 0.0).astype(np.float32), 16_000)
    pictures = ResultSet("a query", "text", "image", "clip", "flat")
    pictures.hits = [
        Hit(1, str(video), "image", 0.9, id="1" * 32, start=2.0, end=4.0, more=1),
        Hit(2, str(video), "image", 0.5, id="2" * 32, start=0.0, end=2.0),
    ]
    sounds = ResultSet("a query", "text", "audio", "clap", "flat")
    sounds.hits = [Hit(1, str(recording), "audio", 0.7, id="3" * 32, start=0.0, end=10.0)]
    text, page = _report(tmp_path, [pictures, sounds])

    square, grey, field = page.all("video")
    assert [urlparse(v["src"]).fragment for v in (square, grey, field)] == ["t=2,4", "t=0,2", "t=0,10"]
    assert unquote_to_bytes(urlparse(square["src"]).path) == os.fsencode(video)
    assert square["preload"] == "none" and "controls" in square
    assert square["aria-label"] == "Play walk #1.mp4 from 00:02-00:04"
    first, second = _poster(square), _poster(grey)
    h, w = first.shape[:2]
    assert np.abs(first[h // 2, w // 2] - RED).max() < 40 and np.abs(second[h // 2, w // 2] - GREY).max() < 40
    wave = _poster(field).mean(axis=2)
    assert (wave[:, : wave.shape[1] // 3] < 128).mean() < 0.05 < 0.3 < (wave[:, -wave.shape[1] // 3 :] < 128).mean()
    assert "00:02-00:04 · 1 more moment in this file" in text and "00:00-00:10" in text
