"""Moments end to end on the REAL CLIP and CLAP architectures (random weights the tests make), with a
controlled bridge (built as tests/localize/synthetic.py builds its own, on both heads): its CLAP head maps
the tone's CLAP vector to e1, its CLIP head maps the red-square frame's CLIP vector to e1 and the grey
shot's to e2. So `query --audio tone.wav` must rank the video's 12-18 s frames first with cosine ~1; a
search that loses the frames' times, mixes them up or merges the grey shots into the square's moment
fails. The times come from the index, not from the bridge: it knows pictures, not seconds.

A text query reaches the audio table through no bridge head: CLAP's text tower and the table's CLAP audio
vectors share CLAP's own space (search/planner.py: a target whose encoder has a text tower is searched
natively). So the bridge's place is taken by the last layers of CLAP's own projections, changed least
(minimum norm) before anything is indexed: the audio projection sends the video's two sound segments
holding the tone whole (25-35 s, 30-40 s) to e1 and its five others to e2, the text projection sends the
caption to e1; every other weight stays random. `query --text CAPTION --target audio` must then give the
25-40 s moment (the two merged) with cosine ~1 and the 0-30 s segments as one moment far below."""

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
from avsearch.media.sound_windows import sound_track_segments
from tests.localize.synthetic import _identity_pair, link_av_weights
from tests.media.videos import GREY, RED, TONE, H, W, make_video
from tests.weights_factory import CLAP_FILE

pytestmark = pytest.mark.slow  # loads CLIP and CLAP (random weights) on CPU; the module: 135 s at load 17

runner = CliRunner()
CAPTION = "a pure tone rings for five seconds"


def _last_inputs(encoder, projection: str, run) -> torch.Tensor:  # noqa: ANN001 - an encoder, a call
    """The inputs of the last layer of CLAP's `projection` (audio_projection, text_projection) during run()."""
    seen: list[torch.Tensor] = []
    layer = getattr(encoder._model, projection)[2]
    hook = layer.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach().double().clone()))
    try:
        run()
    finally:
        hook.remove()
    return torch.cat(seen)


def _send(state: dict, projection: str, inputs: torch.Tensor, targets: torch.Tensor) -> None:
    """The last layer of `projection` changed least (minimum norm) so that inputs[k] gives targets[k]."""
    w, b = state[f"module.{projection}.2.weight"], state[f"module.{projection}.2.bias"]
    wd, bd = w.double(), b.double()
    miss = targets - inputs @ wd.T - bd  # (k, 512)
    state[f"module.{projection}.2.weight"] = (wd + miss.T @ torch.linalg.pinv(inputs).T).to(w.dtype)


def _controlled_clap(weights: Path, video: Path) -> None:
    """CLAP's checkpoint in `weights` (a link to the shared one) replaced by a copy whose audio projection
    sends the video's sound segments holding the tone (25-35 s, 30-40 s) to e1 and the others to e2, and
    whose text projection sends CAPTION to e1; every other weight stays as it was (random)."""
    # loaded from a folder of its own: the process caches encoders by folder, and later loads must see the edit
    probe = link_av_weights(weights, weights.parent / "clap_probe")
    clap = load_encoder("clap-630k-fusion", ("audio", "text"), probe, "cpu")
    prepare = clap.preparer("audio")
    segments = list(sound_track_segments(video, 48_000))
    items = [prepare.from_samples(w) for _, _, w in segments]
    sound = _last_inputs(clap, "audio_projection", lambda: clap.encode_prepared("audio", items))
    text = _last_inputs(clap, "text_projection", lambda: clap.encode_text([CAPTION]))
    holds = [s <= TONE[0] + 0.1 and e >= TONE[1] for s, e, _ in segments]  # the last one ends at the end: 40.008 s
    assert sum(holds) == 2 and len(segments) == 7
    e1, e2 = torch.eye(512, dtype=torch.float64)[:2]
    checkpoint = torch.load(weights / CLAP_FILE, map_location="cpu", weights_only=False)
    _send(checkpoint["state_dict"], "audio_projection", sound, torch.stack([e1 if h else e2 for h in holds]))
    _send(checkpoint["state_dict"], "text_projection", text, e1[None])
    (weights / CLAP_FILE).unlink()
    torch.save(checkpoint, weights / CLAP_FILE)


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
    make_video(media / "walk.mp4")  # red square 12-18 s, tone 30-35 s
    tone = root / "tone.wav"
    t = np.arange(2 * 48_000) / 48_000
    sf.write(tone, (0.25 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 48_000)
    for name, square in (("red.png", True), ("grey.png", False)):
        _frame(square).save(root / name)
    _controlled_clap(weights, media / "walk.mp4")  # before any load from `weights`: the edit is what loads
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
    return {"weights": weights, "index": index, "tone": tone, "red": root / "red.png", "media": media}


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


def test_the_tones_caption_finds_its_segment_of_the_sound_track(world) -> None:
    args = ["query", "--text", CAPTION, "--target", "audio", "--json", "--index-dir", str(world["index"])]
    result = runner.invoke(app, [*args, "--weights-dir", str(world["weights"]), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    (listed,) = json.loads(result.stdout)
    assert listed["space"] == "clap"  # CLAP text against CLAP audio: no bridge head on the way
    best, *others = listed["hits"]
    assert Path(best["path"]).name == "walk.mp4" and best["score"] > 0.99
    # the two segments holding the tone whole (25-35 s, 30-40 s), merged; the others a moment of their own
    assert (best["start"], round(best["end"])) == (TONE[0] - 5, TONE[1] + 5), best
    assert [(h["start"], h["end"]) for h in others] == [(0.0, 30.0)] and others[0]["score"] < 0.5
