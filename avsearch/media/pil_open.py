"""PIL's lazy open without PIL's own size guard, for the decoders (media/image.py) and the detector's
probe (media/detect.py): one module below both, so neither imports the other for it."""

from __future__ import annotations

import threading
from pathlib import Path

from PIL import Image

_PIL_GUARD = threading.Lock()


def open_image(path: Path) -> Image.Image:
    """PIL's Image.open (header only, lazy) without PIL's own size guard: ours applies after reduction.

    PIL's guard is a process-wide setting; it is switched off only while the header is read, under a
    lock, so concurrent decodes (the encoders decode in threads) never restore each other's value.
    """
    with _PIL_GUARD:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
