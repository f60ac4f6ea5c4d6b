"""What tiny JPEGs declaring huge sizes cost load_image: peak memory and CPU, each in a fresh child.

    python benchmarks/jpeg_bombs.py [--side 16384] [--scans 0 100 1000] [--limits off]

For each file (written by tests/media/jpegs.py, a few hundred bytes): a progressive one, a sequential one
whose first scan is the luma only (multi-scan) and an ordinary sequential one (one interleaved scan),
4:2:0 colour, declaring side x side; then grey progressive ones at side x side with extra empty scans.
Each is decoded by load_image in a forked child: the outcome (its size, or the one-line refusal), the
growth of the child's peak RSS (VmHWM) and its CPU seconds. `--limits off` raises max_jpeg_coefficients
and max_jpeg_scans out of the way, to show what the limits prevent (the 16384 files then take 786 MB each,
1,000 scans about 30 s of CPU; a larger --side takes 3 bytes a pixel: mind the machine's memory).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from avsearch.media import image as image_module
from avsearch.media.config import media_config
from avsearch.media.image import load_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.media.jpegs
from tests.media.jpegs import tiny_jpeg  # noqa: E402


def _status_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))  # type: ignore[union-attr]


def _measure(path: Path) -> dict:
    """load_image(path) in a forked child: outcome, peak RSS growth (MB), CPU seconds."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            start, cpu = _status_kb("VmRSS"), time.process_time()
            try:
                outcome = "x".join(map(str, load_image(path).size))
            except Exception as exc:  # noqa: BLE001 - reported, whatever it is
                outcome = f"{type(exc).__name__}: {exc}"
            row = {"outcome": outcome, "growth_mb": (_status_kb("VmHWM") - start) / 1024}
            row["cpu_s"] = time.process_time() - cpu
            os.write(write, json.dumps(row).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data or b'{"outcome": "the child died", "growth_mb": 0, "cpu_s": 0}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=16384)
    parser.add_argument("--scans", type=int, nargs="*", default=[0, 100, 1000])
    parser.add_argument("--limits", choices=("on", "off"), default="on")
    args = parser.parse_args()
    if args.limits == "off":
        bundled = media_config()
        lifted = replace(bundled, image=replace(bundled.image, max_jpeg_coefficients=2**40, max_jpeg_scans=2**31))
        image_module.media_config = lambda: lifted  # the children inherit it
    resource.setrlimit(resource.RLIMIT_AS, (16 << 30, resource.RLIM_INFINITY))  # a backstop, not a measure
    cases = [
        (f"{scan} 4:2:0", tiny_jpeg(args.side, args.side, scan)) for scan in ("progressive", "multi-scan", "sequential")
    ]
    cases += [
        (f"progressive grey, {n} extra scans", tiny_jpeg(args.side, args.side, "progressive", False, n))
        for n in args.scans
    ]
    print(f"limits {args.limits}; {args.side} x {args.side}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        warm = Path(folder) / "warm.jpg"
        warm.write_bytes(tiny_jpeg(64, 48, "progressive"))
        load_image(warm)  # PIL's JPEG plugin loads here, outside the measure
        for name, data in cases:
            path = Path(folder) / "tiny.jpg"
            path.write_bytes(data)
            row = _measure(path)
            cost = f"peak +{row['growth_mb']:7.1f} MB  {row['cpu_s']:6.2f} s CPU"
            print(f"{name:34} {len(data):>7,} B  {cost}  {row['outcome'][:150]}")


if __name__ == "__main__":
    main()
