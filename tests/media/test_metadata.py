"""Metadata read at index time (media/metadata.py): header values per kind, nulls for unreadable files,
path fields, and the tags sidecar (CSV and JSON lines)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avsearch.errors import InputError
from avsearch.media.metadata import (
    MediaInfo,
    find_sidecar,
    path_fields,
    read_media_info,
    read_tags,
    relative_key,
)
from avsearch.modalities import AUDIO, IMAGE, POINTCLOUD
from tests.search.media_factory import write_audio, write_cloud, write_image


def test_audio_duration_and_rate_from_the_header(tmp_path: Path) -> None:
    wav = write_audio(tmp_path / "a.wav", 0, seconds=1.5, rate=22050)
    info = read_media_info(wav, AUDIO)
    assert info.sample_rate == 22050
    assert info.duration == pytest.approx(1.5, abs=1 / 22050)
    assert info.width is None and info.points is None


def test_image_size_and_exif_rotation(tmp_path: Path) -> None:
    png = tmp_path / "wide.png"
    Image.new("RGB", (40, 10)).save(png)
    assert read_media_info(png, IMAGE) == MediaInfo(width=40, height=10)
    # a JPEG stored 40x10 with EXIF orientation 6 (rotate 90) is shown 10 wide, 40 high
    jpg = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 10)).save(jpg, exif=exif)
    assert read_media_info(jpg, IMAGE) == MediaInfo(width=10, height=40)


def test_point_counts(tmp_path: Path) -> None:
    assert read_media_info(write_cloud(tmp_path / "c.npy", 1), POINTCLOUD).points == 1500
    xyz = tmp_path / "c.xyz"
    xyz.write_text("".join(f"{i} {i * 2} {i * 3}\n" for i in range(77)))
    assert read_media_info(xyz, POINTCLOUD).points == 77
    off = tmp_path / "tetra.off"
    off.write_text("OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n")
    assert read_media_info(off, POINTCLOUD).points == 4  # a mesh counts its vertices, not surface samples


def test_unreadable_metadata_is_null_not_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + os.urandom(40))
    assert read_media_info(bad, AUDIO) == MediaInfo()
    assert read_media_info(tmp_path / "missing.png", IMAGE) == MediaInfo()


def test_path_fields_are_relative_to_the_root(tmp_path: Path) -> None:
    root = tmp_path / "media"
    assert path_fields(str(root / "field" / "dawn" / "A.WAV"), root) == ("field/dawn", "wav")
    assert path_fields(str(root / "top.png"), root) == ("", "png")
    assert path_fields(str(root / "noext"), root) == ("", "")
    assert relative_key(str(root / "field" / "a b.wav"), root) == "field/a b.wav"


def test_tags_csv_and_jsonl(tmp_path: Path) -> None:
    csv_file = tmp_path / "tags.csv"
    csv_file.write_text('path,tags,comment\nfield/a.wav,"bird, dawn",x\n./field/a.wav,frog,\nb.png,,\n')
    assert read_tags(csv_file) == {"field/a.wav": ("bird", "dawn", "frog"), "b.png": ()}
    jsonl = tmp_path / "tags.jsonl"
    jsonl.write_text('{"path": "x/y.png", "tags": ["cat", " dog "]}\n\n{"path": "z.wav", "tags": "a;b"}\n')
    assert read_tags(jsonl) == {"x/y.png": ("cat", "dog"), "z.wav": ("a", "b")}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("t.csv", "file,labels\na,b\n", "needs a header row with `path` and `tags`"),
        ("t.jsonl", '{"path": "a"}\nnot json\n', "t.jsonl:2: not a JSON line"),
        ("t.jsonl", '{"path": "a", "tags": 5}\n', "t.jsonl:1: tags must be a string or a list"),
        ("t.jsonl", '["a"]\n', 't.jsonl:1: expected {"path"'),
    ],
)
def test_bad_sidecars_are_one_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=None) as err:
        read_tags(tmp_path / name)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_sidecar_lookup(tmp_path: Path) -> None:
    assert find_sidecar(tmp_path, None) is None
    (tmp_path / "avsearch-tags.jsonl").write_text("")
    assert find_sidecar(tmp_path, None) == tmp_path / "avsearch-tags.jsonl"
    given = tmp_path / "mine.csv"
    given.write_text("path,tags\n")
    assert find_sidecar(tmp_path, given) == given
    with pytest.raises(InputError, match="tags file not found"):
        find_sidecar(tmp_path, tmp_path / "nope.csv")
    assert np.asarray(write_image(tmp_path / "i.png", 0)).size  # the factory is importable here too
