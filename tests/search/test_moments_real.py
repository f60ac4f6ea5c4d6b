"""Moments end to end on the REAL CLIP and CLAP architectures (random weights the tests make), with a
controlled bridge (built as tests/localize/synthetic.py builds its own, on both heads): its CLAP head maps
the tone's CLAP vector to e1, its CLIP head maps the red-square frame's CLIP vector to e1 and the grey
shot's to e2. So `query --audio tone.wav` must rank the video's 12-18 s frames first with cosine ~1; a
search that loses the frames' times, mixes them up or merges the grey shots into the square's moment
fails. The times come from the index, not from the bridge: it knows pictures, not seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.encoders.registry import load_encoder
from avsearch.indexing.pipeline import index_folder
from tests.localize.synthetic import _identity_pair, link_av_weights
from tests.media.videos import GREY, RED, H, W, make_video

pytestmark = pytest.mark.slow  # loads CLIP and CLAP (random weights) on CPU: ~25 s with the index

runner = CliRunner()


def _frame(square: bool) -> Image.Image:
    pixels = np.full((H, W, 3), GREY, np.uint8)
    if square:
        pixels[H // 4 : H // 4 + H // 2, W // 4 : W // 4 + W // 2] = RED
    return Image.fromarray(pixels)


def _onto(vectors: np.ndarray) -> torch.Tensor:
    """A linear map sending vectors[k] to the k-th unit vector (least squares)."""
    targets = np.eye(vectors.shape[1], vectors.shape[0])
    return torch.tensor(targets @ np.linalg.pinv(vectors.astype(np.float64).T), dtype=torch.float32)


@pytest.fixture(scope="module")
def world(av_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("moments_real")
    weights = link_av_weights(av_weights_dir, root / "weights")
    media = root / "media"
    media.mkdir()
    make_video(media / "walk.mp4", audio=False)  # red square 12-18 s (its frames are what this test searches)
    tone = root / "tone.wav"
    t = np.arange(2 * 48_000) / 48_000
    sf.write(tone, (0.25 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 48_000)
    for name, square in (("red.png", True), ("grey.png", False)):
        _frame(square).save(root / name)
    clip = load_encoder("clip-vit-b-32-openai", ("image",), weights, "cpu")
    clap = load_encoder("clap-630k-fusion", ("audio",), weights, "cpu")
    frames = clip.encode_files("image", [root / "red.png", root / "grey.png"])
    state: dict[str, torch.Tensor] = {}
    _identity_pair(_onto(clap.encode_files("audio", [tone])), "Head_A", state)  # CLAP side: tone -> e1
    _identity_pair(_onto(frames), "Head_B", state)  # CLIP side: red frame -> e1, grey shot -> e2
    torch.save(state, weights / "clap_clip.pt")
    index = root / "index"
    summary = index_folder(media, index, weights / "clap_clip.pt", weights_dir=weights, device="cpu")
    assert summary.failed == [] and summary.added == 1
    return {"weights": weights, "index": index, "tone": tone, "red": root / "red.png"}


def test_sound_finds_the_square_moment_in_the_video(world) -> None:
    result = runner.invoke(
        app,
        [
            "query",
            "--audio",
            str(world["tone"]),
            "--target",
            "image",
            "--json",
            "--index-dir",
            str(world["index"]),
            "--weights-dir",
            str(world["weights"]),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    (listed,) = json.loads(result.stdout)
    best = listed["hits"][0]
    assert Path(best["path"]).name == "walk.mp4" and best["score"] > 0.99
    assert abs(best["start"] - 12.0) <= 1.0 and abs(best["end"] - 18.0) <= 1.0  # within one sampling step
    # the grey shots before and after are moments of their own, far below (not merged into the square's)
    others = [(h["start"], h["end"], h["score"]) for h in listed["hits"][1:]]
    assert sorted((s, e) for s, e, _ in others) == [(0.0, 12.0), (18.0, 40.0)]
    assert all(score < 0.5 for _, _, score in others)
    paths = runner.invoke(
        app,
        ["query", "--id", best["id"], "--target", "image", "--paths-only", "--index-dir", str(world["index"])],
    )
    assert paths.exit_code == 0, paths.output
    # the two grey shots (their order is a tie near 0), the square's own moment left out of its own list
    assert sorted(Path(line).name for line in paths.stdout.split()) == ["walk.mp4#t=0.0,12.0", "walk.mp4#t=18.0,40.0"]


def test_video_frames_as_the_query_through_the_cli(world) -> None:
    video = world["index"].parent / "media" / "walk.mp4"
    args = ["query", "--video", str(video), "--from", "frames", "--start", "12", "--end", "18", "--target", "image"]
    args += ["--json", "--index-dir", str(world["index"]), "--weights-dir", str(world["weights"]), "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (listed,) = json.loads(result.stdout)
    assert listed["query"].endswith("walk.mp4#t=12,18") and listed["query_modality"] == "image"
    best = listed["hits"][0]
    assert (best["start"], best["end"]) == (12.0, 18.0) and best["score"] > 0.99  # the same frames, re-embedded
