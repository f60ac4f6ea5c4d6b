"""A JPEG's frame and first scan, read from its header markers: what libjpeg holds while decoding it.

libjpeg decodes a JPEG whose first scan carries every component (sequential, interleaved: what cameras
write) one row of blocks at a time, so its memory follows the output, DCT-scaled or not. A progressive
JPEG, or a sequential one whose first scan carries only some components, is decoded from a buffer of
every DCT coefficient at the declared size (2 bytes each, 64 a block), whatever scale it is drawn at:
measured, a 228-byte progressive JPEG declaring 16384 x 16384 took 786 MB to decode at 1/8. And libjpeg
passes over that whole buffer once a scan, even a scan of a few bytes (end-of-band runs): 1,000 scans of
14 bytes each took 31 s of CPU at 16384 x 16384 grey (libjpeg-turbo's "LJT-01-003"; it advises a scan limit).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # not DHT, JPG, DAC
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length
_BLOCK = 64  # coefficients in an 8 x 8 block


@dataclass(frozen=True)
class JpegFrame:
    width: int
    height: int
    sampling: tuple[tuple[int, int], ...]  # (horizontal, vertical) sampling factor of each component
    progressive: bool
    first_scan_components: int

    @property
    def buffered(self) -> bool:
        """Whether libjpeg decodes it from a whole-picture coefficient buffer (several scans to combine)."""
        return self.progressive or self.first_scan_components < len(self.sampling)

    @property
    def coefficients(self) -> int:
        """DCT coefficients in libjpeg's whole-picture buffer: each component's blocks, rounded up to whole
        MCUs as libjpeg allocates them (1 a pixel for grey, 1.5 for 4:2:0 colour, 3 for 4:4:4, 4 for CMYK)."""
        max_h = max(h for h, _ in self.sampling)
        max_v = max(v for _, v in self.sampling)
        total = 0
        for h, v in self.sampling:
            wide = -(-self.width * h // (max_h * 8))
            high = -(-self.height * v // (max_v * 8))
            total += -(-wide // h) * h * -(-high // v) * v
        return total * _BLOCK


def count_scans(path: Path) -> int:
    """Start-of-scan markers in the file: an upper bound on the scans libjpeg decodes. A 0xFF in scan
    data is always followed by 0x00 or a restart code, so each 0xFF 0xDA is a marker (or inside metadata,
    such as a thumbnail: counted too, which only ever errs towards more)."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        count, at = 0, data.find(b"\xff\xda")
        while at >= 0:
            count += 1
            at = data.find(b"\xff\xda", at + 2)
        return count


def _marker(fh: BinaryIO) -> int | None:
    """The next marker code, skipping stray bytes and 0xFF fill as libjpeg does; None at the end."""
    byte = fh.read(1)
    while byte and byte != b"\xff":
        byte = fh.read(1)
    while byte == b"\xff":
        byte = fh.read(1)
    return byte[0] if byte else None


def read_frame(path: Path) -> JpegFrame | None:
    """The frame (SOF) and first scan (SOS) headers of a JPEG file, or None when it has no frame before
    a first scan (not a JPEG, or one libjpeg would not decode either)."""
    frame: tuple[int, int, tuple[tuple[int, int], ...], bool] | None = None
    with path.open("rb") as fh:
        if fh.read(2) != b"\xff\xd8":
            return None
        while (code := _marker(fh)) is not None and code != _EOI:
            if code in _STANDALONE:
                continue
            raw = fh.read(2)
            if len(raw) < 2:
                return None
            body = struct.unpack(">H", raw)[0] - 2
            if body < 0:  # a length under its own 2 bytes: corrupt
                return None
            if code in _SOF:
                head = fh.read(body)
                if len(head) < 6 or len(head) < 6 + 3 * head[5]:
                    return None
                height, width, count = struct.unpack(">HHB", head[1:6])
                factors = tuple((head[7 + 3 * i] >> 4, head[7 + 3 * i] & 15) for i in range(count))
                if not factors or min(min(f) for f in factors) < 1:
                    return None
                frame = (width, height, factors, code in _PROGRESSIVE)
            elif code == _SOS:
                scanned = fh.read(1)
                if frame is None or not scanned:
                    return None
                return JpegFrame(*frame, first_scan_components=scanned[0])
            else:
                fh.seek(body, 1)
    return None
