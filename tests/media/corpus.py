"""Test-only: write one small file of every supported media format, every kind of bad media file, and
plainly-not-media files, each with the verdict media/detect.py must give it."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import trimesh
from PIL import Image

from avsearch.modalities import AUDIO, IMAGE, POINTCLOUD


@dataclass(frozen=True)
class Case:
    name: str
    write: Callable[[Path], None]
    kind: str | None  # what detect_kind says
    fmt: str = ""  # Detected.format
    reason: str | None = None  # a regex for the reason detect() gives (the file is failed media)
    decode_reason: str | None = None  # a regex for the DecodeError its reader raises (detect says media)


def _cloud(n: int = 300, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True) * (1.0, 2.0, 0.5)


def _picture(fmt: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        img = Image.fromarray((np.random.default_rng(1).random((24, 32, 3)) * 255).astype(np.uint8))
        img.save(path, fmt)

    return write


def _sound(fmt: str, subtype: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        t = np.arange(8000) / 16000
        sf.write(os.fsencode(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, subtype, format=fmt)

    return write


def _ply(binary: bool) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        xyz = _cloud()
        header = (
            f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\nelement vertex {len(xyz)}\n"
            "property float x\nproperty float y\nproperty float z\nend_header\n"
        ).encode()
        body = xyz.astype("<f4").tobytes() if binary else "".join(f"{x} {y} {z}\n" for x, y, z in xyz).encode()
        path.write_bytes(header + body)

    return write


def _pcd(comment: bool, binary: bool) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        xyz = _cloud().astype("<f4")
        header = "# .PCD v0.7 - Point Cloud Data file format\n" if comment else ""
        header += (
            "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
            f"WIDTH {len(xyz)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(xyz)}\n"
            f"DATA {'binary' if binary else 'ascii'}\n"
        )
        body = xyz.tobytes() if binary else "".join(f"{x} {y} {z}\n" for x, y, z in xyz).encode()
        path.write_bytes(header.encode() + body)

    return write


def _text_rows(header: str, sep: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        rows = "".join(sep.join(f"{v:.6f}" for v in (*p, 0.0, 0.0, 1.0)) + "\n" for p in _cloud())
        path.write_text(header + rows)

    return write


def _mesh(file_type: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        mesh = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
        data = mesh.export(file_type=file_type)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return write


def _save_npy(value: object, allow_pickle: bool = False) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("wb") as fh:  # a file object: np.save would add .npy to other names
            np.save(fh, value, allow_pickle=allow_pickle)

    return write


def _npz(path: Path) -> None:
    with path.open("wb") as fh:
        np.savez_compressed(fh, xyz=_cloud(), label=np.array(3))


def _lying_npy(path: Path) -> None:
    """A valid .npy header announcing 1e10 x 3 float32 values, then 12 bytes: 120 GB claimed."""
    with path.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (10**10, 3)})
        fh.write(bytes(12))


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("code ran while reading a .npy",))


def _evil_npy(path: Path) -> None:
    arr = np.empty((), dtype=object)
    arr[()] = {"xyz": _Evil()}
    with path.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(arr, fh, protocol=3)


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("word/document.xml", "<w:document/>")


_RANDOM = np.random.default_rng(7).integers(1, 256, 4096, dtype=np.uint8).tobytes().replace(b"\n", b" ")
_RANDOM = b"\x00" + _RANDOM  # a NUL byte: binary, not text, whatever else the draw gives
_OBJECT = np.array("a string, pickled", dtype=object)  # np.save pickles a 0-d object array

GOOD: tuple[Case, ...] = (
    Case("photo.png", _picture("PNG"), IMAGE, "png"),
    Case("photo.jpg", _picture("JPEG"), IMAGE, "jpeg"),
    Case("photo.gif", _picture("GIF"), IMAGE, "gif"),
    Case("photo.bmp", _picture("BMP"), IMAGE, "bmp"),
    Case("photo.tif", _picture("TIFF"), IMAGE, "tiff"),
    Case("photo.webp", _picture("WEBP"), IMAGE, "webp"),
    Case("photo.tga", _picture("TGA"), IMAGE, "tga"),  # no signature: PIL's probe knows it
    Case("tone.wav", _sound("WAV", "PCM_16"), AUDIO, "wav"),
    Case("tone.flac", _sound("FLAC", "PCM_16"), AUDIO, "flac"),
    Case("tone.ogg", _sound("OGG", "VORBIS"), AUDIO, "ogg"),
    Case("tone.mp3", _sound("MP3", "MPEG_LAYER_III"), AUDIO, "mp3"),  # MPEG frames, no ID3 tag: the frame header
    Case("ascii.ply", _ply(binary=False), POINTCLOUD, "ply"),
    Case("binary.ply", _ply(binary=True), POINTCLOUD, "ply"),
    Case("commented.pcd", _pcd(comment=True, binary=False), POINTCLOUD, "pcd"),
    Case("bare.pcd", _pcd(comment=False, binary=True), POINTCLOUD, "pcd"),
    Case("array.npy", _save_npy(_cloud()), POINTCLOUD, "npy"),
    Case("cmcr_dict.npy", _save_npy({"xyz": _cloud().astype(np.float16), "name": "toy"}, True), POINTCLOUD, "npy"),
    Case("arrays.npz", _npz, POINTCLOUD, "npz"),
    Case("points.xyz", _text_rows("", " "), POINTCLOUD, "xyz"),
    Case("modelnet.txt", _text_rows("", ","), POINTCLOUD, "xyz"),
    Case("export.csv", _text_rows("x,y,z,nx,ny,nz\n", ","), POINTCLOUD, "csv"),
    Case("box.off", _mesh("off"), POINTCLOUD, "off"),
    Case("box.obj", _mesh("obj"), POINTCLOUD, "obj"),
    Case("ascii.stl", _mesh("stl_ascii"), POINTCLOUD, "stl"),
    Case("binary.stl", _mesh("stl"), POINTCLOUD, "stl"),
    Case("cloud.png", _ply(binary=True), POINTCLOUD, "ply"),  # content first: a PLY named .png
    Case("picture.wav", _picture("PNG"), IMAGE, "png"),  # and a PNG named .wav
)

EMPTY = "empty file \\(0 bytes\\)"
BAD: tuple[Case, ...] = (
    *(
        Case(f"empty{ext}", _bytes(b""), kind, fmt, reason=EMPTY)
        for ext, kind, fmt in (
            (".jpg", IMAGE, "jpeg"),
            (".png", IMAGE, "png"),
            (".wav", AUDIO, "wav"),
            (".flac", AUDIO, "flac"),
            (".mp3", AUDIO, "mp3"),
            (".ply", POINTCLOUD, "ply"),
            (".npy", POINTCLOUD, "npy"),
            (".xyz", POINTCLOUD, "xyz"),
        )
    ),
    Case("noise.jpg", _bytes(_RANDOM), IMAGE, "jpeg", reason="not a .jpg picture: its bytes match no picture format"),
    Case("noise.wav", _bytes(_RANDOM), AUDIO, "wav", reason="not a .wav sound: its bytes match no sound format"),
    Case("noise.ply", _bytes(_RANDOM), POINTCLOUD, "ply", reason="not a .ply point cloud or mesh: its bytes"),
    Case("letter.png", _bytes(b"Dear reader,\nthis is not a picture.\n"), IMAGE, "png", reason="it holds text"),
    Case("cut.ply", _bytes(b"ply\nformat ascii 1.0\nelement vertex 3\n"), POINTCLOUD, "ply", reason="no end_header"),
    Case("strings.npy", _save_npy(np.array(["a", "b"], dtype=object), True), POINTCLOUD, "npy", reason="objects"),
    Case("flat.npy", _save_npy(np.zeros((10, 2), np.float32)), POINTCLOUD, "npy", reason=r"expected an \(N, 3\)"),
    Case("embeddings.npy", _save_npy(np.zeros((4, 512), np.float32)), POINTCLOUD, "npy", reason=r"got shape \(4, 512"),
    Case("words.npy", _save_npy(np.array([["a", "b", "c"]])), POINTCLOUD, "npy", reason="must be numbers"),
    Case("huge.npy", _lying_npy, POINTCLOUD, "npy", reason=r"announces a \(10000000000, 3\) float32 array"),
    Case("chopped.npy", _bytes(b"\x93NUMPY\x01\x00"), POINTCLOUD, "npy", reason="not a readable .npy array"),
    Case("document.npz", _zip, POINTCLOUD, "npz", reason="without .npy arrays"),
    Case("scan.las", _bytes(b"LASF" + bytes(300)), POINTCLOUD, "las", reason="unsupported point-cloud format"),
    # Media by signature or name whose reader finds the fault deeper in the file:
    Case("pickled.npy", _save_npy(_OBJECT, True), POINTCLOUD, "npy", decode_reason="pickled str"),
    Case("evil.npy", _evil_npy, POINTCLOUD, "npy", decode_reason="refusing to unpickle builtins.print"),
    Case("nokey.npy", _save_npy({"a": 1, "b": 2}, True), POINTCLOUD, "npy", decode_reason="no 'xyz' array"),
    Case(
        "cut.jpg",
        lambda p: _picture("JPEG")(p) or p.write_bytes(p.read_bytes()[:300]),
        IMAGE,
        "jpeg",
        decode_reason="corrupt or truncated",
    ),  # fmt: skip
    Case("words.xyz", _bytes(b"alpha beta gamma\n"), POINTCLOUD, "xyz", decode_reason="non-numeric"),
    Case("render.exr", _bytes(b"v/1\x01\x02\x00\x00\x00" + bytes(64)), IMAGE, "exr", decode_reason="OpenEXR"),
    Case("riff.wav", _bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64)), AUDIO, "wav", decode_reason="decodable"),
)

PLAIN: tuple[Case, ...] = (  # plainly not media
    Case("notes.txt", _bytes(b"Shopping list:\n- milk\n- 3 eggs\n"), None),
    Case("README", _bytes(b"# avsearch\n\nSearch your media.\n"), None),
    Case("config.json", _bytes(b'{"a": [1, 2, 3]}\n'), None),
    Case("people.csv", _bytes(b"name,age,city\nAda,36,London\n"), None),
    Case("archive.zip", _zip, None),
    Case("blob.bin", _bytes(_RANDOM), None),
    Case("script.py", _bytes(b"import os\nprint(os.getcwd())\n"), None),
    Case("empty", _bytes(b""), None),
    Case("table.h5", _bytes(b"\x89HDF\r\n\x1a\n" + bytes(120)), None),  # PIL names HDF5 but cannot decode it
)


def write_all(folder: Path, cases: tuple[Case, ...]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case in cases:
        case.write(folder / case.name)
        paths[case.name] = folder / case.name
    return paths
