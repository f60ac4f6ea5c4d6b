"""Image decoding: any file PIL reads -> an upright 8-bit RGB PIL image, or a DecodeError.

Handles EXIF orientation, palette and alpha (composited on white, as a viewer shows it), CMYK,
16-bit and float greyscale, animated GIF/WebP/TIFF (first frame), and guards against decompression
bombs (images whose pixel count would exhaust memory) and truncated files.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from avsearch.errors import DecodeError

log = logging.getLogger(__name__)

# Refuse images above this many pixels (about 178 megapixels, twice PIL's warning threshold): a
# crafted 1 KB PNG can otherwise declare 50k x 50k pixels and take gigabytes to decode.
MAX_PIXELS = 2 * 89_478_485
_ALPHA_BACKGROUND = (255, 255, 255)


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


def load_image(path: Path | str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image file to an upright RGB image (H, W, 3 uint8 as a PIL image).

    Raises DecodeError naming the file when it is not an image, truncated, empty or too large.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x its limit; we treat any bomb warning as a refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise DecodeError(
                        f"{path}: image of {width}x{height} pixels exceeds the {max_pixels} pixel limit "
                        "(decompression-bomb guard)"
                    )
                img.seek(0)  # first frame of animations
                img.load()  # full decode now, so truncation surfaces here
                upright = ImageOps.exif_transpose(img)
                return to_rgb(upright if upright is not None else img).copy()
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"{path}: image too large (decompression-bomb guard): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError(f"{path}: not an image PIL can decode") from exc
    except FileNotFoundError as exc:
        raise DecodeError(f"{path}: no such file") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # PIL reports truncated or corrupt data as OSError ("image file is truncated") or SyntaxError.
        raise DecodeError(f"{path}: corrupt or truncated image ({exc})") from exc
