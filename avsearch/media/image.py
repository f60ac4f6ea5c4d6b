"""Image decoding: any file PIL reads -> an upright 8-bit RGB PIL image, or a DecodeError.

Handles EXIF orientation, palette and alpha (composited on white, as a viewer shows it), CMYK,
16-bit and float greyscale, animated GIF/WebP/TIFF (first frame), truncated files, and large pictures:
those are decoded reduced (JPEG DCT scaling, else a box reduction after decoding; configs/media.toml
`reduced_side`), so a 100 MP scan decodes in a fraction of its full memory. The decompression-bomb
guard (`max_pixels`, one limit in configs/media.toml) applies to the size a picture decodes to; PIL's
own declared-size guard, which would refuse pictures that decode reduced well within it, is not used.
The shape is bounded too (`max_aspect_ratio`), from the header: every encoder resizes the shorter side
to its input size, so a 1 x 100000 strip of a few hundred bytes would otherwise become gigabytes.
A progressive (or multi-scan) JPEG is decoded from all its DCT coefficients at the declared size, however
reduced it is drawn, so those are bounded from the header too (`max_jpeg_coefficients`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from avsearch.errors import DecodeError
from avsearch.media.config import media_config
from avsearch.media.detect import require
from avsearch.media.jpeg_frame import count_scans, read_frame
from avsearch.media.pil_open import open_image
from avsearch.modalities import IMAGE

log = logging.getLogger(__name__)

_ALPHA_BACKGROUND = (255, 255, 255)
# Formats PIL has no decoder for, and what would read them (said in the reason, nothing is installed).
_NO_DECODER = {"exr": "OpenEXR (the OpenEXR package)", "heif": "HEIF (the pillow-heif package)"}


def _to_8bit_grey(img: Image.Image) -> Image.Image:
    """16-bit ('I;16*', 'I') and float ('F') greyscale -> 'L', scaling instead of clipping."""
    arr = np.asarray(img).astype(np.float64)
    if img.mode == "F":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    elif img.mode.startswith("I;16") or arr.max() > 255:
        arr = arr / 65535.0 * 255.0  # 16-bit range, the only one 'I' images come from in practice
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (alpha composited on white)."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit_grey(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("LA", "La", "PA", "RGBa") or (img.mode == "L" and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, _ALPHA_BACKGROUND)
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB") if img.mode != "RGB" else img


def _draft(img: Image.Image, side: int) -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 scale (nearly free in libjpeg) when its shorter side allows
    it and stays at least `side`."""
    width, height = img.size
    factor = min(width, height) // side
    if factor >= 2 and img.format in ("JPEG", "MPO"):  # MPO: multi-picture JPEG from cameras
        img.draft(img.mode, (-(-width // factor), -(-height // factor)))  # keeps the mode, scales only


def _reduce(img: Image.Image, side: int) -> Image.Image:
    """Box-reduce by a whole factor while the shorter side stays at least `side` (other formats, or a
    JPEG still large after 1/8 scaling)."""
    factor = min(img.size) // side
    return img.reduce(factor) if factor >= 2 else img


def _ratio(value: float) -> str:
    """An aspect ratio as people write it: 100000:1, 33.3:1."""
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}".removesuffix(".0")


def shape_problem(width: int, height: int, max_aspect_ratio: int | None = None) -> str | None:
    """Why a picture of this declared size is refused before decoding (one line), or None.

    The aspect limit is what bounds the encoders' shorter-side resize: a picture within N:1 becomes at
    most N x S^2 pixels at input size S, whatever its own size.
    """
    limit = media_config().image.max_aspect_ratio if max_aspect_ratio is None else max_aspect_ratio
    if width < 1 or height < 1:
        return f"image of {width}x{height} pixels holds no pixels"
    ratio = max(width, height) / min(width, height)
    if ratio > limit:
        return (
            f"image of {width}x{height} pixels: aspect ratio {_ratio(ratio)}:1 exceeds the {limit}:1 limit "
            "(max_aspect_ratio, configs/media.toml)"
        )
    return None


def coefficient_problem(path: Path) -> str | None:
    """Why a JPEG is refused before decoding (one line), or None: progressive and multi-scan ones hold every
    DCT coefficient of the declared size while decoding (2 bytes each), even when drawn at 1/8, and pass
    over all of them once a scan (media.toml [image] max_jpeg_coefficients, max_jpeg_scans)."""
    limits = media_config().image
    frame = read_frame(path)
    if frame is None:  # PIL found a frame and a scan in the header; libjpeg would not read it either
        return "JPEG header without a frame before its first scan"
    if not frame.buffered:
        return None
    kind = "progressive" if frame.progressive else "multi-scan"
    shown = f"image of {frame.width}x{frame.height} pixels: a {kind} JPEG"
    if frame.coefficients > limits.max_jpeg_coefficients:
        return (
            f"{shown} is decoded from all its {frame.coefficients:,} DCT coefficients at once "
            f"({frame.coefficients * 2 >> 20:,} MiB), over the {limits.max_jpeg_coefficients:,} limit "
            "(max_jpeg_coefficients, configs/media.toml)"
        )
    scans = count_scans(path)
    if scans > limits.max_jpeg_scans:
        return (
            f"{shown} of {scans:,} scans, each a pass over all its coefficients, over the "
            f"{limits.max_jpeg_scans:,} scan limit (max_jpeg_scans, configs/media.toml)"
        )
    return None


def bounded_crop(
    left: int, top: int, right: int, bottom: int, max_aspect_ratio: int | None = None
) -> tuple[int, int, int, int]:
    """A crop box (left, top, right, bottom) whose longer side is cut, about its centre, to at most
    max_aspect_ratio times its shorter side (media.toml [image] by default).

    For crops of a decoded picture (localisation boxes, a user's own included): the encoders' shorter-side
    resize and centre crop keep only the middle of a long thin box anyway, and a 1-pixel-wide box
    across a large picture would otherwise resize to gigabytes.
    """
    limit = media_config().image.max_aspect_ratio if max_aspect_ratio is None else max_aspect_ratio
    width, height = right - left, bottom - top
    short = max(1, min(width, height))
    if width > limit * short:
        left += (width - limit * short) // 2
        right = left + limit * short
    elif height > limit * short:
        top += (height - limit * short) // 2
        bottom = top + limit * short
    return left, top, right, bottom


def load_image(
    path: Path | str,
    max_pixels: int | None = None,
    reduced_side: int | None = None,
    max_aspect_ratio: int | None = None,
) -> Image.Image:
    """Decode an image file to an upright RGB image (H, W, 3 uint8 as a PIL image).

    max_pixels / reduced_side / max_aspect_ratio: default from configs/media.toml [image]. Large
    pictures come back reduced (shorter side at least reduced_side). Raises DecodeError naming the file
    when it is not a picture (by content: media/detect.py), truncated, empty, has no installed decoder,
    would decode to more than max_pixels pixels, is longer than max_aspect_ratio times its width (or
    the other way round), or is a progressive (or multi-scan) JPEG holding more than max_jpeg_coefficients
    DCT coefficients while decoding or of more than max_jpeg_scans scans (the last two judged from the
    file's markers, before any pixel is decoded).
    """
    path = Path(path)
    limits = media_config().image
    max_pixels = limits.max_pixels if max_pixels is None else max_pixels
    side = limits.reduced_side if reduced_side is None else reduced_side
    found = require(path, IMAGE)
    try:
        with open_image(path) as img:
            declared = img.size
            problem = shape_problem(*declared, max_aspect_ratio)
            if problem is None and img.format in ("JPEG", "MPO"):
                problem = coefficient_problem(path)
            if problem is not None:
                raise DecodeError(f"{path}: {problem}")
            img.seek(0)  # first frame of animations
            _draft(img, side)
            width, height = img.size
            if width * height > max_pixels:
                shown = f"{declared[0]}x{declared[1]}"
                shown += f" (reduced {width}x{height})" if img.size != declared else ""
                raise DecodeError(
                    f"{path}: image of {shown} pixels exceeds the {max_pixels} pixel limit (decompression-bomb guard)"
                )
            img.load()  # full decode now, so truncation surfaces here
            upright = ImageOps.exif_transpose(img)
            result = _reduce(to_rgb(upright if upright is not None else img), side)
            return result.copy() if result is img else result  # never the object tied to the open file
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:  # raised by plugins that check frames as they decode
        raise DecodeError(f"{path}: image too large (decompression-bomb guard): {exc}") from exc
    except UnidentifiedImageError as exc:
        if found.format in _NO_DECODER:
            raise DecodeError(
                f"{path}: {_NO_DECODER[found.format]} picture, which no installed decoder reads (Pillow cannot)"
            ) from exc
        raise DecodeError(f"{path}: not an image PIL can decode") from exc
    except FileNotFoundError as exc:
        raise DecodeError(f"{path}: no such file") from exc
    except OSError as exc:
        if "Ghostscript" in str(exc):  # PIL reads PostScript pictures only through Ghostscript
            raise DecodeError(f"{path}: EPS picture, which needs Ghostscript (not found) to decode") from exc
        raise DecodeError(f"{path}: corrupt or truncated image ({exc})") from exc
    except (SyntaxError, ValueError, EOFError) as exc:
        # PIL reports truncated or corrupt data as OSError ("image file is truncated") or SyntaxError.
        raise DecodeError(f"{path}: corrupt or truncated image ({exc})") from exc
