"""JPEGs written by hand, a few hundred bytes, declaring any size (media and server tests).

The frame header declares width x height; the first scan is a DC-only progressive scan, or a sequential
scan of all components (interleaved) or of the first only (multi-scan). Huffman tables of one 1-bit code
make every block 1 bit (2 for sequential: DC and end of block), and the scan data is cut after 100 bytes:
libjpeg fills the rest with zeros, with a warning, and decodes the declared size all the same.
"""

from __future__ import annotations

import struct

_ONE_CODE = bytes([1] + [0] * 15)  # one code of length 1, for the symbol that follows


def _segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body


def tiny_jpeg(width: int, height: int, scan: str = "progressive", colour: bool = True, extra_scans: int = 0) -> bytes:
    """scan: "progressive", "sequential" (interleaved, what cameras write) or "multi-scan" (sequential,
    first scan of the luma only). colour: YCbCr 4:2:0 (1.5 DCT coefficients a pixel), else grey (1).
    extra_scans: progressive AC scans of the luma after the first, 4 bytes of data each."""
    components = [(1, 0x22), (2, 0x11), (3, 0x11)] if colour else [(1, 0x11)]
    frame = struct.pack(">BHHB", 8, height, width, len(components))
    frame += b"".join(bytes([ident, sampling, 0]) for ident, sampling in components)
    scanned = components[:1] if scan == "multi-scan" else components
    head = bytes([len(scanned)]) + b"".join(bytes([ident, 0x00]) for ident, _ in scanned)
    spectral = b"\x00\x00\x00" if scan == "progressive" else b"\x00\x3f\x00"  # DC only / all 64, no refinement
    tables = b"\x00" + _ONE_CODE + b"\x00"  # DC table 0: symbol 0 (no difference)
    if scan != "progressive" or extra_scans:
        tables += b"\x10" + _ONE_CODE + b"\x00"  # AC table 0: end of block
    more = _segment(0xDA, b"\x01\x01\x00\x01\x3f\x00") + bytes(4)  # AC coefficients 1-63 of the luma
    return (
        b"\xff\xd8"
        + _segment(0xDB, b"\x00" + bytes([1] * 64))
        + _segment(0xC2 if scan == "progressive" else 0xC0, frame)
        + _segment(0xC4, tables)
        + _segment(0xDA, head + spectral)
        + bytes(100)
        + more * extra_scans
        + b"\xff\xd9"
    )
