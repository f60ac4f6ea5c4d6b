"""Tell pictures, sounds, videos and 3D shapes apart by CONTENT first, with one verdict for every caller.

`detect(path)` -> Detected(kind, format, reason), deciding in this order:
1. signatures: magic bytes, with a header check where one is cheap (JPEG, PNG, GIF, BMP, TIFF, WebP,
   EXR, ...; WAV, FLAC, Ogg, MP3, AIFF, ...; PLY, PCD, NumPy .npy, .npz; video containers: MP4/MOV,
   Matroska/WebM, AVI, checked before the ISO brands that make an .mp4 look like a picture or a sound);
2. 3D formats without a signature: binary STL (its size follows from its triangle count), PCD without
   its comment line, then text: OFF, Wavefront OBJ, ASCII STL, rows of numbers, CSV with an x,y,z header;
3. the decoders' own probes (PIL reads a picture's header, libsndfile a sound's);
4. nothing matched: a file whose extension names a media format is that media and *failed*, with the
   reason (an empty .jpg, random bytes in a .wav, prose named .png); any other file is not media.
The content decides over the name: a PLY named .png is a point cloud. The tables and sniffers of steps 1
and 2 live in media/signatures.py (pure functions of the bytes). The readers (image.load_image,
audio.load_audio, pointcloud.load_pointcloud) start from the same verdict (`require`), so index, embed,
query and classify3d answer alike for one file, every time.

`detect_kind(path)` is the kind alone, for callers that only route files: a failed file keeps the kind
its signature or extension claims, so decoding it raises DecodeError with the reason.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from avsearch.errors import DecodeError
from avsearch.media.failures import NOT_MEDIA
from avsearch.media.signatures import (
    EXTENSIONS,
    NOUN,
    PROBE,
    TEXT_FORMATS,
    Detected,
    by_content,
    is_text,
    split_row,
    xyz_header_columns,
)
from avsearch.modalities import AUDIO, IMAGE

__all__ = ["Detected", "detect", "detect_kind", "require", "split_row", "xyz_header_columns"]

log = logging.getLogger(__name__)


def detect(path: Path | str) -> Detected:
    """The verdict on one file, by content first (see the module docstring). Never raises for a bad file."""
    path = Path(path)
    claimed = EXTENSIONS.get(path.suffix.lower())
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # opening a FIFO would block until a writer comes
            return _claimed(claimed, "not a regular file")
        with path.open("rb") as fh:
            head = fh.read(PROBE)
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        return _claimed(claimed, "no such file")
    except OSError as exc:
        return _claimed(claimed, f"cannot read: {exc.strerror or exc}")
    if not head:
        return _claimed(claimed, "empty file (0 bytes)") if claimed else Detected(None)
    found = by_content(path, head, size, claimed)
    found = found or _by_probe(path)
    if found is not None:
        if claimed is not None and claimed[0] != found.kind:
            log.info("%s: named like a %s but holds a %s", path, NOUN[claimed[0]], NOUN.get(found.kind or ""))
        return found
    if claimed is None:
        return Detected(None)
    if claimed[1] in TEXT_FORMATS and is_text(head):
        return Detected(*claimed)  # its own parser says what is wrong with the text
    content = "it holds text" if is_text(head) else f"its bytes match no {NOUN[claimed[0]]} format"
    return _claimed(claimed, f"not a {path.suffix.lower()} {NOUN[claimed[0]]}: {content}")


def detect_kind(path: Path | str) -> str | None:
    """AUDIO, IMAGE, POINTCLOUD or VIDEO, or None for a file that is not media (see `detect`).

    A file that claims a kind and cannot be decoded keeps that kind here: its decoder then raises
    DecodeError with the reason, so routing callers list it as failed rather than silently skip it.
    """
    return detect(path).kind


def require(path: Path, kind: str) -> Detected:
    """The verdict on `path` when it is decodable media of `kind`; DecodeError naming the file otherwise."""
    found = detect(path)
    if found.reason is not None:
        raise DecodeError(f"{path}: {found.reason}")
    if found.kind is None:
        raise DecodeError(f"{path}: {NOT_MEDIA}")
    if found.kind != kind:
        raise DecodeError(f"{path}: not a {NOUN[kind]}: by its content it is a {NOUN[found.kind]}")
    return found


def _claimed(claimed: tuple[str, str] | None, reason: str) -> Detected:
    return Detected(claimed[0], claimed[1], reason) if claimed else Detected(None, "", reason)


def _by_probe(path: Path) -> Detected | None:
    """Formats without a signature above: PIL's and libsndfile's own header probes."""
    from PIL import ImageFile

    from avsearch.media.pil_open import open_image

    try:
        with open_image(path) as img:
            if not isinstance(img, ImageFile.StubImageFile):  # HDF5, GRIB, BUFR: data PIL only names
                return Detected(IMAGE, (img.format or "").lower())
    except Exception:  # noqa: BLE001 - a probe: PIL's plugins raise many types for bytes that are not theirs
        pass
    import soundfile as sf

    try:
        info = sf.info(os.fsencode(path))  # bytes: soundfile encodes a str path strictly (non-UTF-8 names)
        return Detected(AUDIO, str(info.format).lower())
    except Exception:  # noqa: BLE001 - a probe, as above
        return None
