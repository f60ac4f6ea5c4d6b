"""Image decoding: every listed format, EXIF orientation, odd modes, bombs and truncated files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avsearch.errors import DecodeError
from avsearch.media.image import load_image


def _rgb(size=(40, 30), color=(200, 30, 60)) -> Image.Image:
    return Image.new("RGB", size, color)


@pytest.mark.parametrize(
    "fmt,ext", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif")]
)
def test_formats_decode_to_rgb(tmp_path: Path, fmt: str, ext: str) -> None:
    path = tmp_path / f"img.{ext}"
    _rgb().save(path, fmt)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (40, 30)
    assert np.abs(np.asarray(img, dtype=int)[15, 20] - (200, 30, 60)).max() < 12  # lossy formats


def test_gif_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [_rgb(color=(255, 0, 0)), _rgb(color=(0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    pixel = np.asarray(load_image(path))[5, 5]
    assert pixel[0] > 200 and pixel[2] < 50


def test_exif_orientation_applied(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    _rgb(size=(40, 20)).save(path, "JPEG", exif=exif)
    assert load_image(path).size == (20, 40)


def test_cmyk_converted(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, "JPEG")  # pure red in CMYK
    img = load_image(path)
    r, g, b = np.asarray(img, dtype=int)[8, 8]
    assert img.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_16bit_greyscale_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    arr = np.full((10, 10), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    Image.fromarray(arr).save(path)
    value = np.asarray(load_image(path))[5, 5]
    assert 120 <= value[0] <= 135 and value[0] == value[1] == value[2]


def test_palette_with_transparency_on_white(tmp_path: Path) -> None:
    path = tmp_path / "pal.png"
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    img.info["transparency"] = 0  # index 0 (black) fully transparent
    img.save(path, transparency=0)
    assert tuple(np.asarray(load_image(path))[5, 5]) == (255, 255, 255)


def test_alpha_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(path)
    Image.new("LA", (10, 10), (0, 255)).save(tmp_path / "la.png")
    assert tuple(np.asarray(load_image(path))[5, 5]) == (255, 255, 255)
    assert tuple(np.asarray(load_image(tmp_path / "la.png"))[5, 5]) == (0, 0, 0)


def test_decompression_bomb_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (200, 200)).save(path)
    with pytest.raises(DecodeError, match="decompression-bomb"):
        load_image(path, max_pixels=10_000)


def test_pil_bomb_warning_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "warn.png"
    Image.new("L", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6_000)  # 10k px is between 1x and 2x PIL's limit
    with pytest.raises(DecodeError, match=str(path.name)):
        load_image(path)


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    noise = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(noise).save(path, "JPEG")
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(DecodeError, match="truncated|corrupt"):
        load_image(path)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "text.png"
    path.write_text("hello")
    with pytest.raises(DecodeError, match="text.png"):
        load_image(path)
    with pytest.raises(DecodeError, match="no such file"):
        load_image(tmp_path / "absent.png")
