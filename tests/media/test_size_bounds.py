"""Issue 23: a few hundred bytes must not take avsearch down.

Tiny files whose headers announce huge sizes (a 1 x 100000 PNG that the encoders' shorter-side resize
made 224 x 22,400,000; a WAV with sample rate 0 or 1 MHz; a 1 Hz WAV resampled 48,000 times up; PLY,
PCD, OFF and .npy headers announcing three billion points) are refused from their headers in one line
naming the file, by every decoder (avsearch/media and the encoders' real preparers) and every command
(index, query, embed), with the memory of trying bounded. Decoding runs in child processes watched by
a memory watchdog, so a regression kills a child, not the machine. The limits come from
configs/media.toml and are exercised at their edges with small legit files.
"""

from __future__ import annotations

import json
import os
import re
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avsearch.errors import ConfigError, DecodeError
from avsearch.media import audio as audio_module
from avsearch.media import pointcloud as pointcloud_module
from avsearch.media.audio import load_audio
from avsearch.media.config import AudioLimits, ImageLimits, MediaConfig, PointCloudLimits, load_media_config
from avsearch.media.image import bounded_crop, load_image
from avsearch.media.pointcloud import load_pointcloud, read_xyz
from tests.media.jpegs import tiny_jpeg

ROOT = Path(__file__).resolve().parents[2]
GROWTH_MB = 500  # the most decoding one tiny file may add to a process's peak RSS
KILL_MB = 4096  # the watchdog kills a child past this RSS (without the fix: 6 GB and rising, then a crash)
# Backstop on a child's address space. Tighter caps break torch's and LanceDB's own reservations (torch
# spins, LanceDB segfaults under 6 GB); this one only stops a 15 GB picture from being allocated at all.
ADDRESS_SPACE = 16 << 30
BILLIONS = 3_000_000_000


# -- tiny files announcing huge sizes ---------------------------------------------------------------
def _png(width: int, height: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        Image.new("L", (width, height), 0).save(path, optimize=True)  # one colour: a few hundred bytes

    return write


def _jpeg(width: int, height: int, scan: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(tiny_jpeg(width, height, scan))

    return write


def _wav(rate: int, declared_bytes: int, held_frames: int = 2000, bits: int = 16) -> Callable[[Path], None]:
    """A PCM WAV written by hand (libsndfile refuses to write these rates): the header says `rate` and a
    data chunk of `declared_bytes`; the file holds `held_frames` frames of a tone."""

    def write(path: Path) -> None:
        width = bits // 8
        fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * width, width, bits)
        tone = np.sin(np.arange(held_frames) / 3.0)
        data = (tone * 100 + 128).astype(np.uint8).tobytes() if bits == 8 else (tone * 8000).astype("<i2").tobytes()
        riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", declared_bytes)
        path.write_bytes(b"RIFF" + struct.pack("<I", min(len(riff) + declared_bytes, 0xFFFFFFFF)) + riff + data)

    return write


def _constant_flac(path: Path) -> None:
    """6,291,456 frames of DC at 1 kHz (1 h 44 min): FLAC stores each block of a constant in a few bytes."""
    block = np.full(1 << 20, 0.25, np.float32)
    with sf.SoundFile(os.fsencode(path), "w", 1000, 1, "PCM_16", format="FLAC") as out:
        for _ in range(6):
            out.write(block)


# 40 distinct points: with its header's count ignored, an ASCII file like these decodes as a cloud
_ROWS = "".join(f"{i % 7} {i % 5} {i % 3}\n" for i in range(40)).encode()


def _ply(binary: bool) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        kind = "binary_little_endian" if binary else "ascii"
        header = f"ply\nformat {kind} 1.0\nelement vertex {BILLIONS}\n"
        header += "property float x\nproperty float y\nproperty float z\nend_header\n"
        body = np.zeros((10, 3), "<f4").tobytes() if binary else _ROWS
        path.write_bytes(header.encode() + body)

    return write


def _pcd(data: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        header = "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
        header += f"WIDTH {BILLIONS}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {BILLIONS}\nDATA {data}\n"
        body = np.zeros((10, 3), "<f4").tobytes() if data == "binary" else _ROWS
        path.write_bytes(header.encode() + body)

    return write


def _npy(path: Path) -> None:
    with path.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (BILLIONS, 3)})
        fh.write(bytes(120))


def _off(path: Path) -> None:
    path.write_bytes(f"OFF\n{BILLIONS} {BILLIONS} 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n".encode())


@dataclass(frozen=True)
class Tiny:
    name: str
    kind: str  # decode_probe's decoder group
    write: Callable[[Path], None]
    reason: str  # a regex the one-line reason must match
    largest: int = 1000  # bytes the file may take: these are tiny files


TINY = (
    Tiny("strip 1x100000.png", "image", _png(1, 100_000), r"image of 1x100000 pixels: aspect ratio 100000:1 exceeds"),
    Tiny("strip 100000x1.png", "image", _png(100_000, 1), r"image of 100000x1 pixels: aspect ratio 100000:1 exceeds"),
    # 228 and 242 bytes: libjpeg held 768 MiB of DCT coefficients for each, drawing them at 1/8 (2048 px)
    Tiny(
        "progressive 16384x16384.jpg",
        "image",
        _jpeg(16384, 16384, "progressive"),
        r"image of 16384x16384 pixels: a progressive JPEG is decoded from all its 402,653,184 DCT coefficients "
        r"at once \(768 MiB\), over the 268,435,456 limit \(max_jpeg_coefficients, configs/media.toml\)$",
    ),
    Tiny(
        "multi-scan 16384x16384.jpg",
        "image",
        _jpeg(16384, 16384, "multi-scan"),
        r"image of 16384x16384 pixels: a multi-scan JPEG is decoded from all its 402,653,184 DCT coefficients",
    ),
    Tiny("rate 0.wav", "audio", _wav(0, 200_000), r"sample rate 0 Hz in the header: a rate must be positive", 5000),
    Tiny(
        "1 MHz for an hour.wav",
        "audio",
        _wav(1_000_000, 0xFFFF_FF00, bits=8),  # 4.3 GB of 8-bit frames: 71 minutes at 1 MHz
        r"sample rate 1,000,000 Hz exceeds the 768,000 Hz limit",
        5000,
    ),
    Tiny(
        "1 Hz for 5 hours.wav",
        "audio",
        _wav(1, 40_000, held_frames=20_000),  # 5.6 hours at 1 Hz: 960 M samples at 48 kHz, 320 M at 16 kHz
        r"audio of 5 h 33 min at 1 Hz decodes to [\d,]+ samples when resampled to [\d,]+ Hz, over the "
        r"134,217,728 sample limit",
        50_000,
    ),
    Tiny(
        "1 kHz for 1 h 44 min.flac",
        "audio48",  # at 16 kHz (CAV-MAE) its 100 M samples are within the limit: decoded, by design
        _constant_flac,
        r"decodes to 301,989,888 samples when resampled to 48,000 Hz, over the 134,217,728 sample limit",
        30_000,
    ),
    Tiny("3e9 vertices binary.ply", "pointcloud", _ply(True), r"PLY header announces 3,000,000,000 vertices, over"),
    Tiny("3e9 vertices ascii.ply", "pointcloud", _ply(False), r"PLY header announces 3,000,000,000 vertices, over"),
    Tiny("3e9 points binary.pcd", "pointcloud", _pcd("binary"), r"PCD header announces 3,000,000,000 points, over"),
    Tiny("3e9 points ascii.pcd", "pointcloud", _pcd("ascii"), r"PCD header announces 3,000,000,000 points, over"),
    Tiny("3e9 rows.npy", "pointcloud", _npy, r"header announces a \(3000000000, 3\) float32 array"),
    Tiny("3e9 vertices.off", "pointcloud", _off, r"OFF header announces 3,000,000,000 vertices, over"),
)
DECODERS = {
    "image": ("load_image", "clip", "cavmae", "ulip"),
    "audio": ("load_audio", "cavmae"),
    "audio48": ("load_audio",),
    "pointcloud": ("load_pointcloud",),
}
THIN_BOX_PICTURE = ("tall 250x8000.png", _png(250, 8000))  # 32:1, within the limit


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "media"
    folder.mkdir()
    for case in TINY:
        case.write(folder / case.name)
    THIN_BOX_PICTURE[1](folder / THIN_BOX_PICTURE[0])
    return folder


# -- child processes under a memory watchdog --------------------------------------------------------
@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    peak_mb: float  # the child's own peak RSS (VmHWM after exec, polled; ru_maxrss when never seen)
    killed: str | None  # why the watchdog stopped it, if it did


def _cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _hwm_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"VmHWM:\s+(\d+)", status)
    return int(found.group(1)) / 1024 if found else 0.0


def _execed(pid: int, args: list[str]) -> bool:
    """Whether the child runs `args` already (not still the forked copy of this process)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            running = fh.read().rstrip(b"\0").split(b"\0")
    except OSError:
        return False
    return running[-len(args) :] == [os.fsencode(a) for a in args]  # a script runs as `python SCRIPT ARGS`


def run_bounded(args: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 300) -> Finished:
    """Run `args`, killing the child when its RSS passes KILL_MB or `timeout` passes."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=err, preexec_fn=_cap_address_space)
        killed, deadline, peak = None, time.monotonic() + timeout, 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            # VmHWM of the exec'd program: wait4's ru_maxrss also counts the forked copy of this (large)
            # test process before exec, so in a full suite it reported the parent's size
            hwm = _hwm_mb(proc.pid)
            if _execed(proc.pid, args):
                peak = max(peak, hwm)
            if killed is None and hwm > KILL_MB:
                killed = f"its RSS passed {KILL_MB} MB"
                proc.kill()
            elif killed is None and time.monotonic() > deadline:
                killed = f"it ran past {timeout} s"
                proc.kill()
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        return Finished(
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            peak or usage.ru_maxrss / 1024,
            killed,
        )


def _rows(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def probed(tiny_folder: Path) -> dict[tuple[str, str], dict]:
    """Every tiny file through every decoder of its kind, in children; a child that dies (killed for its
    memory, or crashed) marks the decoder it was in and the next child goes on with the next file."""
    pending = [f"{case.kind}:{tiny_folder / case.name}" for case in TINY]
    pending.append(f"crop:{tiny_folder / THIN_BOX_PICTURE[0]}")
    results: dict[tuple[str, str], dict] = {}
    while pending:
        done = run_bounded([sys.executable, "-m", "tests.media.decode_probe", *pending])
        rows = _rows(done.stdout)
        results.update({(r["path"], r["decoder"]): r for r in rows if "outcome" in r})
        started = [r for r in rows if "start" in r]
        if done.returncode == 0 or not started:
            assert done.returncode == 0, f"the probe failed before any file:\n{done.stderr[-3000:]}"
            break
        last = started[-1]
        if (last["start"], last["decoder"]) not in results:
            why = done.killed or f"it died with exit status {done.returncode}: {done.stderr.strip()[-300:]}"
            results[(last["start"], last["decoder"])] = {"outcome": f"the child was stopped: {why}", "message": ""}
        position = next(i for i, p in enumerate(pending) if p.split(":", 1)[1] == last["start"])
        pending = pending[position + 1 :]
    return results


@pytest.mark.parametrize(
    ("case", "decoder"),
    [(case, decoder) for case in TINY for decoder in DECODERS[case.kind]],
    ids=[f"{case.name}-{decoder}" for case in TINY for decoder in DECODERS[case.kind]],
)
def test_a_tiny_file_announcing_a_huge_size_is_one_line_and_bounded_memory(
    probed: dict[tuple[str, str], dict], tiny_folder: Path, case: Tiny, decoder: str
) -> None:
    path = tiny_folder / case.name
    assert path.stat().st_size <= case.largest  # the attack is the size ratio: keep the files tiny
    row = probed.get((str(path), decoder), {"outcome": "not run: the child died on an earlier decoder"})
    assert row["outcome"] == "DecodeError", f"{decoder}: {row['outcome']} {row.get('message', '')}"
    message = row["message"]
    assert "\n" not in message and message.startswith(f"{path}: "), message
    assert re.search(case.reason, message), message
    assert row["growth_mb"] < GROWTH_MB, f"{decoder} raised the peak RSS by {row['growth_mb']:.0f} MB"


def test_a_thin_localisation_box_is_cut_before_the_resize(
    probed: dict[tuple[str, str], dict], tiny_folder: Path
) -> None:
    # A 1 x 8000 box of a 250 x 8000 picture took CLIP's shorter-side resize to 224 x 1,792,000 (1.2 GB).
    row = probed.get((str(tiny_folder / THIN_BOX_PICTURE[0]), "localize_crop"), {"outcome": "not run"})
    assert row["outcome"] == "decoded", f"{row['outcome']} {row.get('message', '')}"
    assert row["growth_mb"] < 100, row["growth_mb"]


# -- the commands, with the test-only fake encoders (the decoders are avsearch's own) --------------
def _fake_cli(commands: list[list[str]]) -> tuple[list[dict], Finished]:
    done = run_bounded([sys.executable, "-m", "tests.media.fake_cli", json.dumps(commands)])
    rows = [r for r in _rows(done.stdout) if "exit_code" in r]
    assert done.killed is None and done.returncode == 0, f"{done.killed or done.returncode}: {done.stderr[-3000:]}"
    return rows, done


@pytest.mark.slow
def test_index_query_and_embed_list_each_tiny_file_in_one_line(tiny_folder: Path, tmp_path: Path) -> None:
    from tests.search.conftest import make_3d_bridge, make_bridge

    # The fake encoders decode sound at 16 kHz, where the FLAC's 100 M samples are within the limit.
    tiny = [case for case in TINY if case.kind != "audio48"]
    media = tmp_path / "media"
    media.mkdir()
    for case in tiny:
        (media / case.name).write_bytes((tiny_folder / case.name).read_bytes())
    good = tmp_path / "good"
    good.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(good / "ok.png")
    index = tmp_path / "index"
    bridges = [make_bridge(tmp_path / "av.safetensors"), make_3d_bridge(tmp_path / "3d.safetensors")]
    build = ["index", str(good), "--index-dir", str(index), "-q", *[a for b in bridges for a in ("--bridge", str(b))]]
    queries = {
        "image": media / "strip 1x100000.png",
        "audio": media / "rate 0.wav",
        "pointcloud": media / "3e9 vertices binary.ply",
    }
    commands = [
        build,  # the baseline: one good picture
        ["index", str(media), "--index-dir", str(index), "-q"],
        *[["query", f"--{kind}", str(path), "--index-dir", str(index)] for kind, path in queries.items()],
        ["embed", str(media), "--out", str(tmp_path / "embeddings"), "--quiet"],
        ["embed", str(queries["image"]), "--out", str(tmp_path / "named"), "--quiet"],
    ]
    rows, _ = _fake_cli(commands)
    assert [r["exception"] for r in rows] == [None] * len(commands), [r["exception"] for r in rows]
    baseline, indexed, *asked, embedded, named = rows
    assert baseline["exit_code"] == 0, baseline["stderr"]

    # index: exit 3 (finished, some files not indexed), each tiny file on one line with its reason
    assert indexed["exit_code"] == 3, indexed["stderr"]
    for case in tiny:
        lines = [ln for ln in indexed["stderr"].splitlines() if str(media / case.name) in ln]
        assert len(lines) == 1 and re.search(case.reason, lines[0]), (case.name, lines)
    # query: exit 1 and one error line, as for any undecodable query file
    for row, (kind, path) in zip(asked, queries.items(), strict=True):
        lines = row["stderr"].strip().splitlines()
        assert row["exit_code"] == 1 and len(lines) == 1, (kind, row["stderr"])
        assert lines[0].startswith("avsearch: error: ") and str(path) in lines[0], lines
    # embed: a folder's bad files are skipped and listed once each (exit 0); a named one is an error
    assert embedded["exit_code"] == 0, embedded["stderr"]
    for case in tiny:
        assert embedded["stderr"].count(str(media / case.name)) == 1, (case.name, embedded["stderr"])
    assert named["exit_code"] == 1 and re.search(TINY[0].reason, named["stderr"]), named["stderr"]

    for row in rows[1:]:  # every command over the tiny files stays near what one good picture costs
        assert row["growth_mb"] < GROWTH_MB, (row["args"][0], row["growth_mb"])


@pytest.mark.slow
def test_index_with_the_real_clip_on_the_issue_picture(tmp_path: Path, av_weights_dir: Path) -> None:
    """The report verbatim: the 1 x 100000 PNG alone in a folder, `avsearch index` with the real CLIP
    (random weights) past 5 GB. Now: exit 3, one line, and the command's peak is its models' own."""
    from tests.search.conftest import make_bridge

    media = tmp_path / "media"
    media.mkdir()
    _png(1, 100_000)(media / "strip.png")
    avsearch = str(Path(sys.executable).with_name("avsearch"))
    bridge = make_bridge(tmp_path / "av.safetensors")
    args = [avsearch, "index", str(media), "--index-dir", str(tmp_path / "index"), "--bridge", str(bridge)]
    done = run_bounded([*args, "--weights-dir", str(av_weights_dir), "-q"], timeout=500)
    assert done.killed is None, f"{done.killed}; peak {done.peak_mb:.0f} MB"
    assert done.returncode == 3, done.stderr[-3000:]
    reason = [ln for ln in done.stderr.splitlines() if "strip.png" in ln]
    assert len(reason) == 1 and re.search(TINY[0].reason, reason[0]), done.stderr
    # CLIP and CLAP themselves take about 2 GB here; the 224 x 22,400,000 picture took 6 GB and more
    assert done.peak_mb < 3500, done.peak_mb


# -- the limits, at their edges, with small legit files (in-process: nothing here can grow large) ----
def _with_limits(monkeypatch: pytest.MonkeyPatch, **sections: object) -> None:
    limits = MediaConfig(**sections)  # type: ignore[arg-type]
    for module in ("image", "audio", "npyfile", "pcd", "pointcloud", "meshheader"):
        monkeypatch.setattr(f"avsearch.media.{module}.media_config", lambda: limits)


def test_limits_come_from_media_toml_and_are_checked(tmp_path: Path) -> None:
    bundled = load_media_config()
    assert bundled.image.max_aspect_ratio == 32
    assert (bundled.image.max_jpeg_coefficients, bundled.image.max_jpeg_scans) == (268_435_456, 100)
    assert bundled.audio == AudioLimits(max_sample_rate=768_000, max_samples=134_217_728)
    assert bundled.pointcloud == PointCloudLimits(max_points=20_000_000)
    custom = tmp_path / "media.toml"
    custom.write_text("[image]\nmax_aspect_ratio = 4\n[audio]\nmax_samples = 1000\n[pointcloud]\nmax_points = 50\n")
    loaded = load_media_config(custom)
    assert (loaded.image.max_aspect_ratio, loaded.audio.max_samples, loaded.pointcloud.max_points) == (4, 1000, 50)
    for bad in (
        "[audio]\nmax_sample_rate = 0\n",
        "[pointcloud]\nmax_points = 1.5\n",
        "[image]\nmax_aspect_ratio = -2\n",
    ):
        custom.write_text(bad)
        with pytest.raises(ConfigError, match="must be a positive integer"):
            load_media_config(custom)


@pytest.mark.parametrize(("size", "kept"), [((32, 1), True), ((1, 32), True), ((33, 1), False), ((2000, 100), True)])
def test_pictures_up_to_the_aspect_limit_decode(tmp_path: Path, size: tuple[int, int], kept: bool) -> None:
    path = tmp_path / "shape.png"
    Image.new("RGB", size, (10, 200, 30)).save(path)
    if kept:
        assert load_image(path).size == size
    else:
        with pytest.raises(DecodeError, match=r"shape.png: image of 33x1 pixels: aspect ratio 33:1 exceeds the 32:1"):
            load_image(path)


def test_a_20_to_1_panorama_decodes(tmp_path: Path) -> None:
    path = tmp_path / "panorama.jpg"
    Image.new("RGB", (8000, 400), (90, 120, 200)).save(path, quality=80)
    assert load_image(path).size == (8000, 400)  # the encoders' resize makes it 4480 x 224: 3 MB


def _photo(path: Path, progressive: bool) -> Path:
    """A 1000 x 800 picture with edges and gradients, 4:2:0 like most JPEGs."""
    y, x = np.mgrid[0:800, 0:1000]
    rgb = np.stack([x * 255 // 999, y * 255 // 799, ((x // 50 + y // 50) % 2) * 200 + 20], axis=-1)
    Image.fromarray(rgb.astype(np.uint8)).save(path, quality=90, subsampling=2, progressive=progressive)
    return path


def test_progressive_jpegs_up_to_the_coefficient_limit_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    progressive = _photo(tmp_path / "progressive.jpg", True)
    baseline = np.asarray(load_image(_photo(tmp_path / "baseline.jpg", False)), dtype=np.int16)
    # libjpeg's buffer, by hand: luma 125 x 100 blocks rounded up to whole 2 x 2 MCUs (126 x 100), each
    # chroma 63 x 50; 18,900 blocks of 64
    held = (126 * 100 + 2 * 63 * 50) * 64
    assert held == 1_209_600
    _with_limits(monkeypatch, image=ImageLimits(max_jpeg_coefficients=held))
    decoded = np.asarray(load_image(progressive), dtype=np.int16)
    assert decoded.shape == baseline.shape == (800, 1000, 3)
    assert np.abs(decoded - baseline).max() <= 2  # the same coefficients, scans reordered (lossless)
    _with_limits(monkeypatch, image=ImageLimits(max_jpeg_coefficients=held - 1))
    with pytest.raises(
        DecodeError,
        match=r"progressive.jpg: image of 1000x800 pixels: a progressive JPEG is decoded from all its 1,209,600 "
        r"DCT coefficients at once \(2 MiB\), over the 1,209,599 limit",
    ):
        load_image(progressive)
    # a sequential JPEG (one interleaved scan) is decoded a row of blocks at a time: no coefficient limit
    _with_limits(monkeypatch, image=ImageLimits(max_jpeg_coefficients=1))
    assert load_image(tmp_path / "baseline.jpg").size == (1000, 800)


def test_progressive_jpegs_of_more_scans_than_the_limit_are_refused(tmp_path: Path) -> None:
    # Each scan is a pass over every coefficient, however few its bytes: 1,000 scans of 14 bytes took 31 s
    # of CPU at 16384 x 16384 grey (libjpeg-turbo's LJT-01-003). Here: a DC scan and 99 or 100 AC scans.
    path = tmp_path / "scans.jpg"
    path.write_bytes(tiny_jpeg(64, 48, "progressive", colour=False, extra_scans=99))
    assert load_image(path).size == (64, 48)
    path.write_bytes(tiny_jpeg(64, 48, "progressive", colour=False, extra_scans=100))
    with pytest.raises(
        DecodeError,
        match=r"scans.jpg: image of 64x48 pixels: a progressive JPEG of 101 scans, each a pass over all its "
        r"coefficients, over the 100 scan limit \(max_jpeg_scans, configs/media.toml\)$",
    ):
        load_image(path)


def test_a_sequential_jpeg_declaring_a_huge_size_decodes_reduced(tmp_path: Path) -> None:
    # Measured: libjpeg's memory for these follows the output (DCT-scaled to 1/8: 34 MB for this one, and
    # 510 MB at the format's largest, 65000 x 65000, within what max_pixels allows any picture to take).
    path = tmp_path / "sequential.jpg"
    path.write_bytes(tiny_jpeg(16384, 16384, "sequential"))
    assert path.stat().st_size < 300
    assert load_image(path).size == (2048, 2048)


def test_localisation_crops_are_cut_to_the_aspect_limit() -> None:
    assert bounded_crop(10, 0, 11, 2000) == (10, 984, 11, 1016)  # 1 x 2000 -> its middle 1 x 32
    assert bounded_crop(0, 5, 4000, 105) == (400, 5, 3600, 105)  # 4000 x 100 -> 3200 x 100, centred
    assert bounded_crop(3, 4, 50, 60) == (3, 4, 50, 60)  # within the limit: unchanged
    assert bounded_crop(0, 0, 10, 1000, max_aspect_ratio=4) == (0, 480, 10, 520)


def test_audio_length_is_judged_from_the_header_before_any_sample_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, 0.3 * np.sin(np.arange(16_000) / 4.0), 16_000)  # 1 s
    _with_limits(monkeypatch, audio=AudioLimits(max_samples=48_000))
    assert load_audio(path, 48_000).shape == (48_000,)  # exactly at the limit
    _with_limits(monkeypatch, audio=AudioLimits(max_samples=47_999))
    monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("samples were read"))
    with pytest.raises(DecodeError, match=r"tone.wav: audio of 1.0 s at 16,000 Hz decodes to 48,000 samples when"):
        load_audio(path, 48_000)


def test_stored_channels_count_when_they_are_all_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from avsearch.encoders.cavmae_features import load_first_channel

    path = tmp_path / "six.wav"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, (8000, 6)), 16_000)
    _with_limits(monkeypatch, audio=AudioLimits(max_samples=20_000))
    assert load_audio(path, 16_000).shape == (8000,)  # down-mixed while read: 8,000 samples held
    with pytest.raises(DecodeError, match=r"six.wav: .* decodes to 48,000 samples \(6 channels kept\), over"):
        load_first_channel(path, 16_000)  # CAV-MAE keeps every channel until it picks the first


def test_mixing_down_block_by_block_gives_the_whole_array_mean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "three.flac"
    rng = np.random.default_rng(1)
    sf.write(path, rng.uniform(-0.6, 0.6, (10_007, 3)), 22_050, subtype="PCM_24")
    stored, _ = sf.read(path, dtype="float32", always_2d=True)
    whole = stored.mean(axis=1, dtype=np.float64).astype(np.float32)
    monkeypatch.setattr(audio_module, "_BLOCK", 1000)  # eleven blocks, the last one short
    assert np.array_equal(load_audio(path, 22_050), np.clip(whole, -1.0, 1.0))


def test_the_audioread_fallback_checks_the_rate_and_stops_at_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, 0.3 * np.sin(np.arange(16_000) / 4.0), 16_000, subtype="PCM_16")

    def no_libsndfile(*args: object, **kwargs: object) -> None:
        raise RuntimeError("libsndfile cannot read this")  # as for containers only audioread decodes

    monkeypatch.setattr(sf, "SoundFile", no_libsndfile)
    assert load_audio(path, 16_000).shape == (16_000,)
    _with_limits(monkeypatch, audio=AudioLimits(max_samples=15_999))
    with pytest.raises(DecodeError, match=r"tone.wav: audio at 16,000 Hz runs past 1.0 s \(15,999 frames x 1 ch"):
        load_audio(path, 16_000)
    _with_limits(monkeypatch, audio=AudioLimits(max_sample_rate=8000))
    with pytest.raises(DecodeError, match=r"tone.wav: sample rate 16,000 Hz exceeds the 8,000 Hz limit"):
        load_audio(path, 16_000)


def _cloud(n: int) -> np.ndarray:
    return np.random.default_rng(n).normal(size=(n, 3))


@pytest.mark.parametrize("fmt", ["npy", "npz", "xyz", "csv", "ply", "pcd", "off"])
def test_point_counts_up_to_the_limit_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    def write(n: int) -> Path:
        path, xyz = tmp_path / f"c{n}.{fmt}", _cloud(n)
        if fmt == "npy":
            np.save(path, xyz)
        elif fmt == "npz":
            np.savez(path, xyz=xyz)
        elif fmt == "xyz":
            path.write_text("# a comment\n" + "".join(f"{x} {y} {z}\n" for x, y, z in xyz))
        elif fmt == "csv":
            path.write_text("x,y,z\n" + "".join(f"{x},{y},{z}\n" for x, y, z in xyz))
        elif fmt == "ply":
            header = f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n"
            header += "property float x\nproperty float y\nproperty float z\nend_header\n"
            path.write_bytes(header.encode() + xyz.astype("<f4").tobytes())
        elif fmt == "pcd":
            header = f"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {n}\n"
            header += f"HEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA ascii\n"
            path.write_text(header + "".join(f"{x} {y} {z}\n" for x, y, z in xyz))
        else:
            path.write_text(f"OFF\n{n} 0 0\n" + "".join(f"{x} {y} {z}\n" for x, y, z in xyz))
        return path

    _with_limits(monkeypatch, pointcloud=PointCloudLimits(max_points=200))
    assert read_xyz(write(200)).shape == (200, 3)
    assert load_pointcloud(write(200)).shape == (8192, 3)
    with pytest.raises(DecodeError, match=r"c201\.\w+: .*\b20[01]\b.* over the (200 )?limit \(max_points, configs/"):
        read_xyz(write(201))


def test_ply_counts_are_held_to_the_bytes_after_the_header(tmp_path: Path) -> None:
    path = tmp_path / "short.ply"
    header = "ply\nformat binary_little_endian 1.0\nelement vertex 1000\nproperty float x\nproperty float y\n"
    header += "property float z\nelement face 10\nproperty list uchar int vertex_indices\nend_header\n"
    path.write_bytes(header.encode() + _cloud(10).astype("<f4").tobytes())
    with pytest.raises(DecodeError, match=r"short.ply: PLY header announces 1,000 vertex, 10 face \(at least 12,010"):
        read_xyz(path)


def test_text_rows_are_read_in_chunks_with_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rows.txt"
    xyz = _cloud(1001)
    lines = [f"{x};{y};{z};7" for x, y, z in xyz]
    lines[500:500] = ["// a comment", "", "   "]
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())  # a BOM and CRLF, as Windows writes
    monkeypatch.setattr(pointcloud_module, "_TEXT_CHUNK", 100)
    assert np.array_equal(read_xyz(path), xyz)
    bad = tmp_path / "bad.xyz"
    bad.write_text("1 2 3\n" * 150 + "1 2 oops\n")
    with pytest.raises(DecodeError, match=r"bad.xyz: non-numeric coordinate \(could not convert string to float"):
        read_xyz(bad)
