"""`avsearch embed` end to end (typer CliRunner) on the real encoders with test-made random weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.embedding import pipeline
from avsearch.encoders.clip import ClipEncoder
from avsearch.encoders.registry import load_encoder


def _media(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, fmt in enumerate(["PNG", "JPEG", "BMP"]):
        Image.new("RGB", (50, 40), (60 * i, 90, 30)).save(folder / f"img{i}.{fmt.lower()}", fmt)
    t = np.arange(48_000) / 48_000
    sf.write(folder / "tone.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 48_000)
    sf.write(folder / "tone.flac", (0.3 * np.sin(2 * np.pi * 550 * t)).astype(np.float32), 48_000)
    (folder / "truncated.jpg").write_bytes((folder / "img1.jpeg").read_bytes()[:300])
    (folder / "notes.txt").write_text("not media\n")
    return folder


def test_embed_end_to_end(av_weights_dir: Path, tmp_path: Path) -> None:
    media = _media(tmp_path / "media")
    caps = tmp_path / "caps.txt"
    caps.write_text("a dog barks\n\nbirds sing\nmusic plays\n")
    out = tmp_path / "out"
    args = ["embed", str(media), "--out", str(out), "--captions", str(caps)]
    args += ["--weights-dir", str(av_weights_dir), "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    image, audio = np.load(out / "image.clip.npy"), np.load(out / "audio.clap.npy")
    tclip, tclap = np.load(out / "text.clip.npy"), np.load(out / "text.clap.npy")
    assert image.shape == (3, 512) and audio.shape == (2, 512)
    assert tclip.shape == tclap.shape == (3, 512)
    for arr in (image, audio, tclip, tclap):
        assert arr.dtype == np.float32 and np.allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
    rows = [json.loads(x) for x in (out / "text.clip.rows.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == ["a dog barks", "birds sing", "music plays"]
    assert [r["line"] for r in rows] == [1, 3, 4]
    assert (out / "text.clap.rows.jsonl").read_text() == (out / "text.clip.rows.jsonl").read_text()
    # Row i of image.clip.npy is the vector of the file named on row i of its manifest.
    clip = load_encoder("clip-vit-b-32-openai", ["image", "text"], weights_dir=av_weights_dir, device="cpu")
    image_rows = [json.loads(x)["source"] for x in (out / "image.clip.rows.jsonl").read_text().splitlines()]
    assert np.allclose(clip.encode_files("image", [Path(image_rows[1])])[0], image[1], atol=1e-6)
    skipped = {Path(json.loads(x)["source"]).name: json.loads(x)["reason"] for x in (out / "skipped.jsonl").open()}
    assert set(skipped) == {"truncated.jpg", "notes.txt"}
    assert "truncated" in skipped["truncated.jpg"] or "corrupt" in skipped["truncated.jpg"]
    assert "truncated.jpg" in result.output  # the reason is shown to the user too
    assert not (out / ".partial").exists()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "up to date" in again.output


def test_resume_after_interruption(av_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    media = tmp_path / "imgs"
    media.mkdir()
    for i in range(5):
        Image.new("RGB", (32, 32), (50 * i, 0, 0)).save(media / f"{i}.png")
    monkeypatch.setattr(pipeline, "embed_option", lambda key, default: 2 if key == "shard_rows" else default)
    real = ClipEncoder.encode_prepared
    calls: list[int] = []

    def crash_on_second_shard(self, modality, items):  # test double: simulates a kill during shard 2
        calls.append(len(items))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, modality, items)

    monkeypatch.setattr(ClipEncoder, "encode_prepared", crash_on_second_shard)
    out = tmp_path / "out"
    args = ["embed", str(media), "--out", str(out), "--weights-dir", str(av_weights_dir), "-q"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 130 and not (out / "image.clip.npy").exists()
    assert len(list((out / ".partial" / "image.clip").glob("shard-*.npy"))) == 1
    calls.clear()
    monkeypatch.setattr(
        ClipEncoder,
        "encode_prepared",
        lambda self, m, items: calls.append(len(items)) or real(self, m, items),
    )
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert calls == [2, 1]  # shard 1 (2 files) was kept on disk; shards 2 and 3 ran
    resumed = np.load(out / "image.clip.npy")
    clip = load_encoder("clip-vit-b-32-openai", ["image"], weights_dir=av_weights_dir, device="cpu")
    assert np.allclose(resumed, clip.encode_files("image", sorted(media.iterdir())), atol=1e-6)


def test_nothing_to_embed_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["embed", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "nothing to embed" in result.output
    missing = CliRunner().invoke(app, ["embed", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 1 and "no such file or folder" in missing.output


def test_a_file_given_by_name_that_cannot_be_embedded_is_an_error(av_weights_dir: Path, tmp_path: Path) -> None:
    media = _media(tmp_path / "media")
    notes = CliRunner().invoke(app, ["embed", str(media / "notes.txt"), "--out", str(tmp_path / "o1")])
    assert notes.exit_code == 1
    assert (
        notes.stderr.strip()
        == f"avsearch: error: {media / 'notes.txt'}: not an audio, image, video or point-cloud file"
    )

    args = ["embed", str(media / "truncated.jpg"), str(media / "img0.png"), "--out", str(tmp_path / "o2")]
    bad = CliRunner().invoke(app, [*args, "--weights-dir", str(av_weights_dir), "--device", "cpu", "--quiet"])
    assert bad.exit_code == 1
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("avsearch: error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"avsearch: error: {media / 'truncated.jpg'}: ")
    assert errors[0].count(str(media / "truncated.jpg")) == 1  # the path once, then the reason
    assert np.load(tmp_path / "o2" / "image.clip.npy").shape == (1, 512)  # the good file is still embedded
