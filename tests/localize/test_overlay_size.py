"""The heat map and overlay are drawn within configs/localize.toml [heatmap] max_pixels, boxes scaled with them.

A picture's header may declare far more pixels than it decodes to: a JPEG decodes at up to 1/8 scale, so
configs/media.toml's max_pixels (178 MP decoded) lets a JPEG declare 64 times that. Both used to be drawn at
the declared size, 8 bytes a pixel for the heat map alone (34 GB for a JPEG declaring 65000 x 65000).
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import signal
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from avsearch.localize.config import load_localize_config
from avsearch.localize.heatmap import heat
from avsearch.localize.pipeline import upright_size
from avsearch.localize.proposals import Box
from avsearch.localize.results import Localization, ScoredBox


def _jpeg(width: int, height: int) -> bytes:
    """A baseline greyscale JPEG of one flat grey, written by hand: a one-code Huffman table for each of DC
    (difference 0) and AC (end of block), so every 8 x 8 block costs 2 zero bits."""

    def segment(marker: int, body: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body

    one_code = bytes([1] + [0] * 15) + b"\x00"  # one code of length 1, for symbol 0
    blocks = -(-width // 8) * -(-height // 8)
    return (
        b"\xff\xd8"
        + segment(0xDB, b"\x00" + bytes([1] * 64))
        + segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
        + segment(0xC4, b"\x00" + one_code)
        + segment(0xC4, b"\x10" + one_code)
        + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + bytes(-(-blocks * 2 // 8))
        + b"\xff\xd9"
    )


def _found(image: Path, width: int, height: int, best: Box) -> Localization:
    whole = Box(0, 0, width, height, "whole")
    return Localization(
        "a.wav", str(image), width, height, [ScoredBox(best, 0.5, 1), ScoredBox(whole, 0.1, 2)], 0.1, ""
    )


def _status_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _in_child(work: Callable[[], object], headroom: int = 1 << 30, timeout: float = 120) -> dict:
    """work() in a forked child (nothing to import again) whose address space is capped at its size plus
    `headroom`: its result or its error, and how far it raised its peak RSS (VmHWM over VmRSS at the start)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            start = _status_kb("VmRSS")
            resource.setrlimit(resource.RLIMIT_AS, (_status_kb("VmSize") * 1024 + headroom, resource.RLIM_INFINITY))
            try:
                row = {"outcome": work()}
            except BaseException as exc:
                row = {"outcome": f"{type(exc).__name__}: {exc}"}
            row["growth_mb"] = (_status_kb("VmHWM") - start) / 1024
            os.write(write, json.dumps(row).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        if not select.select([read], [], [], timeout)[0]:
            os.kill(pid, signal.SIGKILL)
            return {"outcome": f"no answer in {timeout} s", "growth_mb": 0.0}
        with os.fdopen(read, "rb", closefd=False) as pipe:
            return json.loads(pipe.read() or b'{"outcome": "the child died", "growth_mb": 0}')
    finally:
        os.close(read)
        os.waitpid(pid, 0)


def test_a_normal_picture_is_drawn_at_its_size_a_larger_one_within_the_cap(tmp_path: Path) -> None:
    picture = tmp_path / "p.png"
    Image.new("RGB", (120, 90), (0, 128, 0)).save(picture)
    best = Box(20, 10, 80, 60, "file")
    found = _found(picture, 120, 90, best)
    full = heat([best, Box(0, 0, 120, 90, "whole")], [0.5, 0.1], 120, 90, floor=0.1)
    assert np.array_equal(found.heatmap(), full)  # within the cap: as before
    quarter = found.heatmap(max_pixels=120 * 90 // 4)
    assert quarter.shape == (45, 60)
    assert quarter[5:30, 10:40].min() == 1.0 and quarter.sum() == 25 * 30  # the box, scaled by 1/2
    out = np.asarray(Image.open(found.save_overlay(tmp_path / "o.png", max_pixels=120 * 90 // 4)))
    assert out.shape == (45, 60, 3) and tuple(out[17, 10]) == (255, 255, 255)  # outline on the scaled box's edge
    cap = load_localize_config().heatmap.max_pixels
    width, height = _found(picture, 65000, 65000, best).drawn_size()
    assert width == height and width * height <= cap < (width + 1) * (height + 1)


def test_a_jpeg_declaring_268_megapixels_is_drawn_in_bounded_memory(tmp_path: Path) -> None:
    # 16384 x 16384 declared, 1 MB of file: over media.toml's 178 MP, yet accepted, as it decodes at 1/8
    # (2048 x 2048). Drawn at the declared size, the heat map alone took 2.1 GB (MemoryError here).
    path = tmp_path / "declares 16384x16384.jpg"
    path.write_bytes(_jpeg(16384, 16384))
    assert path.stat().st_size < 1_100_000

    def draw() -> list[int]:
        width, height = upright_size(path)
        found = _found(path, width, height, Box(width / 4, height / 4, width / 2, height / 2, "file"))
        with Image.open(found.save_overlay(tmp_path / "overlay.png", max_pixels=1_000_000)) as drawn:
            return [width, height, *drawn.size]

    row = _in_child(draw)
    assert row["outcome"] == [16384, 16384, 1000, 1000], row
    assert row["growth_mb"] < 200, row
