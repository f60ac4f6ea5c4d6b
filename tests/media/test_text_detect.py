"""Caption files, text validation, and content-based detection of media kinds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avsearch.errors import InputError
from avsearch.media.detect import Detected, detect, detect_kind
from avsearch.media.text import check_texts, read_caption_lines, read_captions
from avsearch.modalities import AUDIO, IMAGE, POINTCLOUD


def test_captions_skip_blank_lines_and_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "caps.txt"
    path.write_text("a dog barks\n\n  birds\tsing  \n", encoding="utf-8")
    assert read_captions(path) == ["a dog barks", "birds sing"]
    assert read_caption_lines(path) == [(1, "a dog barks"), (3, "birds sing")]


def test_caption_file_errors(tmp_path: Path) -> None:
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    for path, reason in [(blank, "no caption"), (binary, "not UTF-8"), (tmp_path / "x.txt", "not found")]:
        with pytest.raises(InputError, match=reason):
            read_captions(path)


def test_empty_text_is_an_error() -> None:
    assert check_texts(["  two\nlines "]) == ["two lines"]
    with pytest.raises(InputError, match="#1 is empty"):
        check_texts(["fine", "   "])


def test_detect_by_content_not_extension(tmp_path: Path) -> None:
    cases = {}
    img = tmp_path / "picture.wav"  # a PNG with a misleading name
    Image.new("RGB", (8, 8)).save(img, "PNG")
    cases[img] = IMAGE
    for fmt in ("JPEG", "GIF", "BMP", "TIFF", "WEBP"):
        p = tmp_path / f"img_{fmt}.dat"
        Image.new("RGB", (8, 8)).save(p, fmt)
        cases[p] = IMAGE
    for fmt, sub in (("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")):
        p = tmp_path / f"snd_{fmt}.jpg"
        sf.write(p, np.zeros((4800, 1), np.float32) + 0.1, 48_000, format=fmt, subtype=sub)
        cases[p] = AUDIO
    ply = tmp_path / "cloud.bin"
    ply.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0 0 0\n")
    cases[ply] = POINTCLOUD
    npy = tmp_path / "cloud.data"
    with npy.open("wb") as fh:
        np.save(fh, np.zeros((100, 3), np.float32))
    cases[npy] = POINTCLOUD
    xyz = tmp_path / "cloud.txt"
    xyz.write_text("0.1 0.2 0.3\n1 2 3\n-1e-3, 4, 5\n")
    cases[xyz] = POINTCLOUD
    notes = tmp_path / "notes.txt"
    notes.write_text("just some words here\n")
    cases[notes] = None
    assert {p.name: detect_kind(p) for p in cases} == {p.name: k for p, k in cases.items()}
    assert not any(detect(p).failed for p in cases)


def test_media_by_name_that_fails_keeps_its_kind_and_gets_a_reason(tmp_path: Path) -> None:
    # detect_kind keeps the kind the name claims, so routing callers send the file to its decoder, which
    # raises the reason; detect() gives the reason up front.
    junk = tmp_path / "notes.png"
    junk.write_text("just some words here\n")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert detect_kind(junk) == IMAGE and detect(junk) == Detected(IMAGE, "png", "not a .png picture: it holds text")
    assert detect_kind(empty) == AUDIO and detect(empty) == Detected(AUDIO, "wav", "empty file (0 bytes)")


def test_missing_and_special_files_fail_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    assert detect(fifo) == Detected(AUDIO, "wav", "not a regular file")
    assert detect(tmp_path) == Detected(None, "", "not a regular file")
    assert detect(tmp_path / "gone.ply") == Detected(POINTCLOUD, "ply", "no such file")
