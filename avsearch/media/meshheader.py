"""What PLY, OFF and binary STL headers announce, judged before trimesh parses a byte of their data.

A header is a promise about the data: a 300-byte PLY may announce three billion vertices. Each count
is held to configs/media.toml [pointcloud] max_points (faces: twice that, as a closed triangle mesh
has about two faces per vertex), and a PLY's counts to the bytes the file holds after its header, so a
parser never sizes a buffer from a count the file cannot back.
"""

from __future__ import annotations

import re
from pathlib import Path

from avsearch.errors import DecodeError
from avsearch.media.config import media_config

_PROBE = 65_536  # header bytes read; detection found end_header within the same span
# PLY scalar types and their sizes in binary files
_PLY_SIZES = {
    **dict.fromkeys(("char", "int8", "uchar", "uint8"), 1),
    **dict.fromkeys(("short", "int16", "ushort", "uint16"), 2),
    **dict.fromkeys(("int", "int32", "uint", "uint32", "float", "float32"), 4),
    **dict.fromkeys(("double", "float64"), 8),
}
_LIMIT_KEY = "(max_points, configs/media.toml)"


def _limits(element: str) -> int:
    """The most rows of `element` a file may announce: vertices max_points, anything else twice that."""
    most = media_config().pointcloud.max_points
    return most if element in ("vertex", "vertices", "points") else 2 * most


def check_declared(path: Path, fmt: str) -> None:
    """DecodeError naming the file when its header (PLY, OFF, binary STL) announces more than the limits
    or, for PLY, more than its data can hold. Other formats announce nothing and pass."""
    if fmt not in ("ply", "off", "stl"):
        return
    with path.open("rb") as fh:
        head = fh.read(_PROBE)
        size = path.stat().st_size
    if fmt == "ply":
        _check_ply(path, head, size)
    elif fmt == "off":
        _check_off(path, head, size)
    elif not head.lstrip().lower().startswith(b"solid"):  # binary STL: a triangle count at byte 80
        _check_count(path, "STL", "triangles", "faces", int.from_bytes(head[80:84], "little"))


def _check_count(path: Path, fmt: str, shown: str, element: str, count: int) -> None:
    limit = _limits(element)
    if count > limit:
        raise DecodeError(f"{path}: {fmt} header announces {count:,} {shown}, over the {limit:,} limit {_LIMIT_KEY}")


def _check_ply(path: Path, head: bytes, size: int) -> None:
    """Element counts against the limits, then the least bytes they need against what follows the header
    (binary: the fixed-size properties, a list's count; ASCII: one digit and a separator a value)."""
    match = re.search(rb"end_header[ \t]*\r?\n", head)
    if match is None:
        return  # detection already named a missing end_header; trimesh reports anything else
    lines = head[: match.start()].decode("ascii", errors="replace").splitlines()
    binary = any(
        ln.split()[:2] in (["format", "binary_little_endian"], ["format", "binary_big_endian"]) for ln in lines
    )
    elements: list[tuple[str, int, int]] = []  # name, count, least bytes a row
    for line in lines:
        words = line.split()
        if len(words) >= 3 and words[0] == "element":
            try:
                count = int(words[2])
            except ValueError:
                raise DecodeError(f"{path}: PLY header line {line.strip()[:60]!r} has no count") from None
            _check_count(path, "PLY", "vertices" if words[1] == "vertex" else f"{words[1]} rows", words[1], count)
            elements.append((words[1], count, 0))
        elif len(words) >= 2 and words[0] == "property" and elements:
            name, count, least = elements[-1]
            if binary:  # a list needs its count at least; a scalar its size
                kind = words[2] if words[1] == "list" and len(words) > 2 else words[1]
                least += _PLY_SIZES.get(kind, 1)
            else:
                least += 2
            elements[-1] = (name, count, least)
    need = sum(count * least for _, count, least in elements)
    held = size - match.end()
    if need > held:
        announced = ", ".join(f"{count:,} {name}" for name, count, _ in elements)
        raise DecodeError(
            f"{path}: PLY header announces {announced} (at least {need:,} bytes) but the file holds {held:,} after it"
        )


def _check_off(path: Path, head: bytes, size: int) -> None:
    """OFF: the vertex and face counts after the OFF keyword (same line or the next significant one)."""
    text = head.decode("utf-8", errors="replace")
    words: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        words += line.split()
        if len(words) >= 3:
            break
    try:
        vertices, faces = int(words[1]), int(words[2])
    except (IndexError, ValueError):
        return  # not the usual layout: trimesh's parser says what is wrong
    _check_count(path, "OFF", "vertices", "vertex", vertices)
    _check_count(path, "OFF", "faces", "faces", faces)
    if 6 * vertices > size:  # "0 0 0\n" is the shortest vertex line
        raise DecodeError(f"{path}: OFF header announces {vertices:,} vertices but the file holds {size:,} bytes")
