"""Tell audio from image from point cloud by file CONTENT (magic bytes, then decoders), not extension.

`detect_kind(path)` returns avsearch.encoders.base.AUDIO / IMAGE / POINTCLOUD, or None when the file
is none of them. Signatures are checked first (cheap, reads 64 bytes); files without a known
signature are offered to PIL and soundfile, then tested as numeric xyz text or a .npy (N, 3+) array.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from avsearch.modalities import AUDIO, IMAGE, POINTCLOUD

log = logging.getLogger(__name__)

_HEAD = 64
_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",  # Windows bitmap
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
    b"\x00\x00\x01\x00",  # ICO
)
_AUDIO_MAGIC = (
    b"fLaC",
    b"OggS",
    b"ID3",  # MP3 with an ID3v2 tag
    b".snd",  # Sun/NeXT au
    b"caff",  # Core Audio
    b"#!AMR",
)
_POINTCLOUD_MAGIC = (b"ply\n", b"ply\r\n", b"LASF", b"# .PCD")
_NUMBER_ROW = re.compile(
    rb"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?([\s,;]+[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?){2,}\s*$"
)


def _by_magic(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return IMAGE
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"RF64"):
        return AUDIO
    if head[:4] == b"RF64" or head[:4] == b"riff":  # RF64 / Wave64
        return AUDIO
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return AUDIO
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
            return IMAGE
        if brand in (b"M4A ", b"M4B ", b"dash"):
            return AUDIO
    if any(head.startswith(m) for m in _IMAGE_MAGIC):
        return IMAGE
    if any(head.startswith(m) for m in _AUDIO_MAGIC):
        return AUDIO
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return AUDIO  # MPEG audio / ADTS AAC frame sync (JPEG's FF D8 was matched above)
    if any(head.startswith(m) for m in _POINTCLOUD_MAGIC):
        return POINTCLOUD
    if head.startswith(b"\x93NUMPY"):
        return None  # decided by shape in _by_decoder
    return None


def _is_xyz_text(path: Path) -> bool:
    """A text file whose first non-comment lines are rows of 3 or more numbers (xyz[, rgb, normals])."""
    try:
        with path.open("rb") as fh:
            lines = [fh.readline() for _ in range(8)]
    except OSError:
        return False
    rows = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith((b"#", b"//"))]
    if rows and rows[0].lstrip().startswith(b"OFF"):
        return True  # OFF mesh: vertices give a point cloud
    return bool(rows) and all(_NUMBER_ROW.match(r) for r in rows)


def _by_decoder(path: Path, head: bytes) -> str | None:
    if head.startswith(b"\x93NUMPY"):
        import numpy as np

        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError):
            return None
        return POINTCLOUD if arr.ndim == 2 and 3 <= arr.shape[1] <= 9 and arr.shape[0] >= 1 else None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return IMAGE
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        pass
    import soundfile as sf

    try:
        info = sf.info(str(path))
        if info.frames > 0 or info.format:
            return AUDIO
    except (RuntimeError, sf.LibsndfileError):
        pass
    return POINTCLOUD if _is_xyz_text(path) else None


def detect_kind(path: Path | str) -> str | None:
    """AUDIO, IMAGE or POINTCLOUD by content; None for anything else (or an unreadable file)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEAD)
    except OSError as exc:
        log.info("%s: unreadable (%s)", path, exc)
        return None
    if not head:
        return None
    return _by_magic(head) or _by_decoder(path, head)
