"""CLAP's audio tower and ULIP-2's point-cloud tower on ONNX Runtime (encoders/onnx_clap.py, onnx_ulip.py)
give torch's vectors: the inputs made without torch equal the torch ones (resampling exactly; the log-mel
within the tolerance stated below; the point groups exactly), each export is within cosine 0.9999 of the
torch encoder on short and long clips and on clouds, an export that is not is never used, and a cold
`avsearch query --audio` / `--pointcloud` answers with the same hits and scores (within 1e-4) through both
paths while importing no torch, laion_clap, librosa or timm.

The real HTSAT-tiny (random weights) and ULIP-2 PointBERT (random checkpoint) are loaded and exported once
per module (about 2 minutes on 2 cores), into the session's throw-away cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from avsearch.encoders import clap_features, clap_inputs, onnx_towers, pointbert, pointbert_inputs
from avsearch.errors import ConfigError
from avsearch.modalities import AUDIO, POINTCLOUD

CLAP = "clap-630k-fusion"
ULIP = "ulip2-pointbert"
AUDIO_CFG = {"window_size": 1024, "hop_size": 480, "mel_bins": 64, "fmin": 50, "fmax": 14000, "sample_rate": 48000}


def _tone(seconds: float, seed: int, rate: int = 48_000, quiet_half: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * (300 + 50 * seed) * t) + 0.03 * rng.standard_normal(t.size)
    if quiet_half:
        wave[: t.size // 2] = 0.0
    return wave.astype(np.float32)


# -- inputs made without torch ----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [44_100, 22_050, 16_000, 8_000, 96_000, 47_999])
def test_resampling_equals_librosa(rate: int) -> None:
    import librosa

    wave = _tone(1.37, seed=rate % 7, rate=rate)
    from avsearch.media.audio import resample

    want = librosa.resample(wave, orig_sr=rate, target_sr=48_000, res_type="soxr_hq")
    np.testing.assert_array_equal(resample(wave, rate, 48_000), want)


@pytest.mark.parametrize("seconds", [2.0, 10.0, 10.005, 23.0])
def test_fusion_mel_matches_the_torch_features(seconds: float) -> None:
    """The numpy log-mel against clap_features' torch one (what the torch query path feeds HTSAT).

    Tolerance: the numpy STFT runs in float64, torch's in float32, whose rounding error is about 1e-7 of
    a frame's largest bin. So bins within 60 dB of their frame's peak agree to 2e-3 dB, and every bin's
    power agrees to 1e-4 of its frame's peak power (far below the peak, a few ulps of torch's float32 sum
    are a large share of a tiny value: measured up to 0.2 dB at -100 dB beside a 34 dB peak)."""
    for quiet_half in (False, True):
        wave = clap_inputs.quantize_int16(_tone(seconds, seed=1, quiet_half=quiet_half))
        ours = clap_inputs.clip_fusion_input(wave, AUDIO_CFG)
        theirs = clap_features.clip_fusion_input(wave, AUDIO_CFG)
        assert ours.longer == theirs.longer == (seconds > 10.005)
        got, want = ours.mel_fusion.astype(np.float64), theirs.mel_fusion.numpy().astype(np.float64)
        assert got.shape == want.shape == (4, 1001, 64)
        peak = want.max(axis=-1, keepdims=True)
        near = want >= peak - 60.0
        assert np.abs(got - want)[near].max() < 2e-3
        power = np.abs(10 ** (got / 10) - 10 ** (want / 10)) / 10 ** (peak / 10)
        assert power.max() < 1e-4


def test_shrunk_mel_matches_torch_interpolation() -> None:
    rng = np.random.default_rng(0)
    for frames in (1002, 1050, 2397, 36_001):
        mel = (rng.standard_normal((frames, 64)) * 10).astype(np.float32)
        want = clap_features.shrink_mel(torch.from_numpy(mel), 1001).numpy()
        np.testing.assert_allclose(clap_inputs.shrink_mel(mel, 1001), want, rtol=0, atol=1e-5)


def _clouds() -> np.ndarray:
    """Clouds of 2,048 points (float32): an ellipsoid of distinct points, a cube's grid (exact ties
    everywhere) and 300 points repeated (exact duplicates, as a small cloud is padded)."""
    rng = np.random.default_rng(4)
    shell = rng.normal(size=(2048, 3)) * [1.0, 2.0, 0.5]
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 13)] * 3), -1).reshape(-1, 3)[:2048]
    few = rng.uniform(-1, 1, (300, 3))
    padded = np.concatenate([few, few[rng.integers(0, 300, 2048 - 300)]])
    return np.stack([shell, grid[rng.permutation(2048) % len(grid)], padded]).astype(np.float32)


def test_point_groups_equal_the_torch_groups() -> None:
    """FPS indices are equal for every cloud (ties go to the lowest index in both). kNN indices are equal
    where a cloud's points are distinct; among equal distances torch's topk order is unspecified, so a
    padded cloud's duplicates may swap indices: its neighbourhoods are compared as coordinates (the
    model's group encoder is order-blind: 1x1 convolutions and a max). A grid's distinct points at equal
    distances can also fall either side of the 32nd place; the grid is checked for FPS only."""
    clouds = _clouds()
    idx = pointbert_inputs.farthest_point_sample(clouds, 512)
    np.testing.assert_array_equal(idx, pointbert.farthest_point_sample(torch.from_numpy(clouds), 512).numpy())
    shell, padded = clouds[[0]], clouds[[2]]
    centres = shell[:, idx[0]]
    np.testing.assert_array_equal(
        pointbert_inputs.knn_indices(32, shell, centres),
        pointbert.knn_indices(32, torch.from_numpy(shell), torch.from_numpy(centres)).numpy(),
    )
    for cloud in (shell, padded):
        got, got_centres = pointbert_inputs.group_points(cloud, 512, 32)
        want, want_centres = pointbert.group_points(torch.from_numpy(cloud), 512, 32)
        np.testing.assert_array_equal(got_centres, want_centres.numpy())
        np.testing.assert_array_equal(np.sort(got, axis=2), np.sort(want.numpy(), axis=2))


# -- the exported towers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, av_weights_dir: Path) -> Path:
    """CLIP + CLAP (the shared folder's files, linked) and a random ULIP-2 checkpoint in one folder."""
    from tests.weights_factory import make_ulip_weights

    folder = tmp_path_factory.mktemp("onnx-av3d-weights")
    for item in av_weights_dir.iterdir():
        (folder / item.name).symlink_to(item)
    return make_ulip_weights(folder)  # random_ulip_state(), saved (a copy when this session made it already)


@pytest.fixture(scope="module")
def towers(weights: Path) -> dict[str, object]:
    """The torch encoders (loaded as a query loads them) and their exports, made once."""
    from avsearch.encoders.registry import get_spec, load_encoder

    out = {}
    for name, tower in ((CLAP, AUDIO), (ULIP, POINTCLOUD)):
        enc = load_encoder(name, (tower,), str(weights), "cpu")
        folder = onnx_towers._export_folder(get_spec(name), tower, weights)
        if not (folder / onnx_towers.GRAPH).is_file():
            assert onnx_towers.export_tower(enc, tower, folder) >= onnx_towers.MIN_COSINE
        out[tower] = enc
    return out


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_audio_tower_gives_the_torch_vectors(
    towers: dict, weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 3 s clip at 44.1 kHz (resampled, repeat-padded) and a 12.5 s one at 48 kHz (the fusion's long
    path: global mel + three crops) give torch's vectors through ONNX Runtime."""
    from avsearch.encoders.registry import get_spec

    monkeypatch.setenv(onnx_towers.ENV, "1")

    fast = onnx_towers.load_onnx_encoder(get_spec(CLAP), (AUDIO,), weights, "cpu")
    assert fast is not None and fast.runtime == "onnx" and fast.fingerprint() == towers[AUDIO].fingerprint()
    short, long = tmp_path / "short.wav", tmp_path / "long.flac"
    sf.write(os.fsencode(short), _tone(3.0, seed=2, rate=44_100), 44_100)
    sf.write(os.fsencode(long), _tone(12.5, seed=3), 48_000)
    assert [fast.prepare(AUDIO, p).longer for p in (short, long)] == [False, True]
    got, want = fast.encode_files(AUDIO, [short, long]), towers[AUDIO].encode_files(AUDIO, [short, long])
    assert got.dtype == np.float32 and got.shape == want.shape == (2, 512)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert _cosines(got, want).min() >= onnx_towers.MIN_COSINE


def test_pointcloud_tower_gives_the_torch_vectors(
    towers: dict, weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avsearch.encoders.registry import get_spec
    from tests.search.media_factory import write_cloud

    monkeypatch.setenv(onnx_towers.ENV, "1")

    fast = onnx_towers.load_onnx_encoder(get_spec(ULIP), (POINTCLOUD,), weights, "cpu")
    assert fast is not None and fast.runtime == "onnx" and fast.fingerprint() == towers[POINTCLOUD].fingerprint()
    paths = [write_cloud(tmp_path / f"c{i}.npy", seed=i) for i in range(2)]  # 1,500 points: padded with repeats
    got, want = fast.encode_files(POINTCLOUD, paths), towers[POINTCLOUD].encode_files(POINTCLOUD, paths)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert _cosines(got, want).min() >= onnx_towers.MIN_COSINE


# -- the registry hook, cheaply ---------------------------------------------------------------------------


class _Loaded:
    """Stands in for a torch encoder just loaded on the CPU."""

    name = "stand-in"
    device = torch.device("cpu")


@pytest.mark.parametrize(("name", "tower"), [(CLAP, AUDIO), (ULIP, POINTCLOUD)])
def test_export_follows_a_torch_load_unless_off_or_unfaithful(
    name: str, tower: str, weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avsearch.encoders.registry import get_spec

    spec = get_spec(name)
    monkeypatch.setattr(onnx_towers, "cache_dir", lambda: tmp_path)
    calls: list[Path] = []

    def export(encoder: object, t: str, path: Path) -> float:
        calls.append(path)
        if len(calls) == 1:
            raise ConfigError("not faithful")  # as export_tower says it, leaving path.unfaithful
        return 1.0

    monkeypatch.setattr(onnx_towers, "export_tower", export)
    monkeypatch.setenv(onnx_towers.ENV, "0")
    onnx_towers.export_after_load(_Loaded(), spec, (tower,), weights)
    assert calls == []
    monkeypatch.setenv(onnx_towers.ENV, "1")
    onnx_towers.export_after_load(_Loaded(), spec, (tower,), weights)
    assert calls == [onnx_towers._export_folder(spec, tower, weights)]
    assert calls[0].parent == tmp_path and calls[0].name.startswith(f"{name}.{tower}.")
    # an export set aside as unfaithful: never used, never tried again; the tower stays on torch
    unfaithful = calls[0].with_name(calls[0].name + ".unfaithful")
    unfaithful.mkdir()
    (unfaithful / onnx_towers.GRAPH).write_bytes(b"")
    (unfaithful / onnx_towers.FINGERPRINT).write_text("x\n")
    onnx_towers.export_after_load(_Loaded(), spec, (tower,), weights)
    assert len(calls) == 1
    assert onnx_towers.load_onnx_encoder(spec, (tower,), weights, "cpu") is None


def test_window_mean_audio_stays_on_torch() -> None:
    import dataclasses

    from avsearch.encoders.registry import get_spec

    spec = get_spec(CLAP)
    assert onnx_towers.supported(spec, (AUDIO,))
    other = dataclasses.replace(spec, options={**spec.options, "long_clip": "window-mean"})
    assert not onnx_towers.supported(other, (AUDIO,)) and onnx_towers.supported(other, ("text",))


# -- a cold query through both paths ----------------------------------------------------------------------

FORBIDDEN = ("torch", "laion_clap", "clap_module", "librosa", "timm", "torchvision", "open_clip", "wandb")
_IMPORT = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, weights: Path) -> dict[str, Path]:
    """2 sounds, 3 clouds and a picture, with the audio-visual and the 3D bridge."""
    from avsearch.cli.app import app
    from tests.search.conftest import make_3d_bridge, make_bridge
    from tests.search.media_factory import write_audio, write_cloud, write_image

    root = tmp_path_factory.mktemp("onnx-av3d-index")
    media = root / "media"
    for i in range(2):
        write_audio(media / f"s{i}.wav", seed=i, seconds=1.0)
    clouds = [write_cloud(media / f"shape{i}.npy", seed=i) for i in range(3)]
    write_image(media / "pic.png", seed=0, size=48)
    bridges = [make_bridge(root / "av.safetensors"), make_3d_bridge(root / "3d.safetensors")]
    args = ["index", media, "--index-dir", root / "index", "--weights-dir", weights, "--quiet"]
    for bridge in bridges:
        args += ["--bridge", bridge]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    query_sound = root / "query.wav"  # a 12 s query at 44.1 kHz: resampled, the fusion's long path
    sf.write(os.fsencode(query_sound), _tone(12.0, seed=5, rate=44_100), 44_100)
    return {"index": root / "index", "audio": query_sound, "pointcloud": clouds[1]}


def _hits(stdout: str) -> list[tuple[str, str, list[tuple[str, float]]]]:
    return [(r["target"], r["space"], [(h["path"], h["score"]) for h in r["hits"]]) for r in json.loads(stdout)]


@pytest.mark.parametrize("kind", [AUDIO, POINTCLOUD])
def test_cold_query_same_results_through_onnx_and_no_torch(
    kind: str, index: dict[str, Path], weights: Path, towers: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avsearch.cli.app import app
    from avsearch.encoders.registry import use_onnx

    args = ["query", f"--{kind}", str(index[kind]), "--index-dir", str(index["index"])]
    args += ["--weights-dir", str(weights), "--json", "--device", "cpu"]
    # torch: in this process, where the module's torch encoders are loaded already
    monkeypatch.setenv(onnx_towers.ENV, "0")
    try:
        done = CliRunner().invoke(app, args)
    finally:
        use_onnx(False)
    assert done.exit_code == 0, done.output
    want = _hits(done.stdout)
    assert sum(len(h) for _, _, h in want) >= 3
    # ONNX Runtime: a fresh process, the export made by the fixture
    env = {k: v for k, v in os.environ.items() if k not in ("AVSEARCH_TIMINGS", "PYTHONWARNINGS")}
    env[onnx_towers.ENV] = "1"
    probe = "import sys\nfrom avsearch.cli import main\nsys.argv = ['avsearch', *sys.argv[1:]]\nmain()\n"
    cold = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe, *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert cold.returncode == 0, cold.stderr[-3000:]
    got = _hits(cold.stdout)
    assert [(t, s, [p for p, _ in h]) for t, s, h in got] == [(t, s, [p for p, _ in h]) for t, s, h in want]
    for (_, _, g), (_, _, w) in zip(got, want, strict=True):
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], atol=1e-4)
    modules = {m.group(1) for line in cold.stderr.splitlines() if (m := _IMPORT.match(line))}
    assert "onnxruntime" in modules
    assert not {m for m in modules if m.split(".")[0] in FORBIDDEN}
