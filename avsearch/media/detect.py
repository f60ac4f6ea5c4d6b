"""Tell pictures, sounds and 3D shapes apart by CONTENT first, with one verdict for every caller.

`detect(path)` -> Detected(kind, format, reason), deciding in this order:
1. signatures: magic bytes, with a header check where one is cheap (JPEG, PNG, GIF, BMP, TIFF, WebP,
   EXR, ...; WAV, FLAC, Ogg, MP3, AIFF, ...; PLY, PCD, NumPy .npy, .npz);
2. 3D formats without a signature: binary STL (its size follows from its triangle count), PCD without
   its comment line, then text: OFF, Wavefront OBJ, ASCII STL, rows of numbers, CSV with an x,y,z header;
3. the decoders' own probes (PIL reads a picture's header, libsndfile a sound's);
4. nothing matched: a file whose extension names a media format is that media and *failed*, with the
   reason (an empty .jpg, random bytes in a .wav, prose named .png); any other file is not media.
The content decides over the name: a PLY named .png is a point cloud. The readers (image.load_image,
audio.load_audio, pointcloud.load_pointcloud) start from the same verdict (`require`), so index, embed,
query and classify3d answer alike for one file, every time.

`detect_kind(path)` is the kind alone, for callers that only route files: a failed file keeps the kind
its signature or extension claims, so decoding it raises DecodeError with the reason.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from avsearch.errors import DecodeError
from avsearch.media.failures import NOT_MEDIA
from avsearch.media.npyfile import MAGIC as NPY_MAGIC
from avsearch.media.npyfile import points_problem, read_npy_header
from avsearch.modalities import AUDIO, IMAGE, POINTCLOUD

log = logging.getLogger(__name__)

_PROBE = 65_536  # bytes read to decide: signatures and the headers of text formats fit in it
_NOUN = {AUDIO: "sound", IMAGE: "picture", POINTCLOUD: "point cloud or mesh"}

# Formats each extension claims; the content decides first, the name only when the content matches
# nothing. .txt and .csv claim nothing: they are point clouds only when their content is.
_EXTENSIONS: dict[str, tuple[str, str]] = {
    **{e: (IMAGE, "jpeg") for e in (".jpg", ".jpeg", ".jpe", ".jfif")},
    **{e: (IMAGE, "tiff") for e in (".tif", ".tiff")},
    **{e: (IMAGE, "bmp") for e in (".bmp", ".dib")},
    **{e: (IMAGE, "jpeg2000") for e in (".jp2", ".j2k", ".jpx")},
    **{e: (IMAGE, "heif") for e in (".heic", ".heif")},
    **{e: (IMAGE, "ppm") for e in (".ppm", ".pgm", ".pbm", ".pnm")},
    **{e: (IMAGE, e[1:]) for e in (".png", ".gif", ".webp", ".exr", ".ico", ".avif", ".tga", ".psd", ".qoi")},
    **{e: (AUDIO, "wav") for e in (".wav", ".wave")},
    **{e: (AUDIO, "ogg") for e in (".ogg", ".oga", ".opus")},
    **{e: (AUDIO, "aiff") for e in (".aif", ".aiff", ".aifc")},
    **{e: (AUDIO, "au") for e in (".au", ".snd")},
    **{e: (AUDIO, e[1:]) for e in (".flac", ".mp3", ".caf", ".m4a", ".aac", ".w64", ".rf64", ".wma", ".mka")},
    **{e: (POINTCLOUD, "las") for e in (".las", ".laz")},
    **{e: (POINTCLOUD, e[1:]) for e in (".ply", ".pcd", ".npy", ".npz", ".xyz", ".obj", ".off", ".stl")},
}
# Formats whose files are text: when such a name holds text that step 2 did not recognise, its parser
# gives the precise reason ("non-numeric coordinate", "fewer than 3 columns") rather than this module.
_TEXT_FORMATS = {"xyz", "obj", "off", "pcd", "stl"}

_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\xff\xd8\xff", IMAGE, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", IMAGE, "png"),
    (b"GIF87a", IMAGE, "gif"),
    (b"GIF89a", IMAGE, "gif"),
    (b"II*\x00", IMAGE, "tiff"),
    (b"MM\x00*", IMAGE, "tiff"),
    (b"II+\x00", IMAGE, "tiff"),  # BigTIFF
    (b"MM\x00+", IMAGE, "tiff"),
    (b"v/1\x01", IMAGE, "exr"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", IMAGE, "jpeg2000"),
    (b"\xffO\xffQ", IMAGE, "jpeg2000"),  # bare codestream
    (b"8BPS", IMAGE, "psd"),
    (b"qoif", IMAGE, "qoi"),
    (b"fLaC", AUDIO, "flac"),
    (b"OggS", AUDIO, "ogg"),
    (b"ID3", AUDIO, "mp3"),
    (b".snd", AUDIO, "au"),
    (b"caff", AUDIO, "caf"),
    (b"#!AMR", AUDIO, "amr"),
    (b"riff.\x91\xcf\x11", AUDIO, "w64"),  # Sony Wave64
    (b"LASF", POINTCLOUD, "las"),
)
# Containers that hold sound or video: the extension says which (a .webm film is not a sound).
_CONTAINERS = (
    (b"0&\xb2u\x8ef\xcf\x11", "asf", (".wma",)),
    (b"\x1aE\xdf\xa3", "matroska", (".mka", ".weba")),
)
_BMP_DIB_SIZES = (12, 40, 52, 56, 64, 108, 124)  # BITMAPCOREHEADER ... BITMAPV5HEADER
_PCD_KEYS = {b"VERSION", b"FIELDS", b"SIZE", b"TYPE", b"COUNT", b"WIDTH", b"HEIGHT", b"VIEWPOINT", b"POINTS"}
_OBJ_KEYS = {"v", "vn", "vt", "vp", "f", "l", "p", "o", "g", "s", "mtllib", "usemtl", "cstype", "deg", "curv"}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_NUMBER_ROW = re.compile(rf"^\s*(?:{_NUMBER})(?:[\s,;]+(?:{_NUMBER})){{2,}}[\s,;]*$", re.IGNORECASE)
_SNIFF_ROWS = 8  # significant lines a text sniff looks at


@dataclass(frozen=True)
class Detected:
    """One file's verdict.

    kind: AUDIO, IMAGE or POINTCLOUD; None when the file is not media.
    format: what its reader should parse ("jpeg", "ply", "npy", "csv", ...; "" when only a decoder's
        probe recognised it, or an unreadable file claims nothing).
    reason: set when the file is media by its signature or extension but cannot be decoded (one line,
        without the path); then `kind` is what it claims to be (None only for an unreadable file
        whose name claims nothing).
    """

    kind: str | None
    format: str = ""
    reason: str | None = None

    @property
    def failed(self) -> bool:
        """Media (or an unreadable file) that cannot be decoded: list it with `reason`."""
        return self.reason is not None

    @property
    def media(self) -> bool:
        """Media that its reader should decode (which may still fail deeper in the file)."""
        return self.kind is not None and self.reason is None


def detect(path: Path | str) -> Detected:
    """The verdict on one file, by content first (see the module docstring). Never raises for a bad file."""
    path = Path(path)
    claimed = _EXTENSIONS.get(path.suffix.lower())
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # opening a FIFO would block until a writer comes
            return _claimed(claimed, "not a regular file")
        with path.open("rb") as fh:
            head = fh.read(_PROBE)
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        return _claimed(claimed, "no such file")
    except OSError as exc:
        return _claimed(claimed, f"cannot read: {exc.strerror or exc}")
    if not head:
        return _claimed(claimed, "empty file (0 bytes)") if claimed else Detected(None)
    found = _by_signature(path, head, size, claimed) or _by_structure(head, size) or _by_text(head)
    found = found or _by_probe(path)
    if found is not None:
        if claimed is not None and claimed[0] != found.kind:
            log.info("%s: named like a %s but holds a %s", path, _NOUN[claimed[0]], _NOUN.get(found.kind or ""))
        return found
    if claimed is None:
        return Detected(None)
    if claimed[1] in _TEXT_FORMATS and _is_text(head):
        return Detected(*claimed)  # its own parser says what is wrong with the text
    content = "it holds text" if _is_text(head) else f"its bytes match no {_NOUN[claimed[0]]} format"
    return _claimed(claimed, f"not a {path.suffix.lower()} {_NOUN[claimed[0]]}: {content}")


def detect_kind(path: Path | str) -> str | None:
    """AUDIO, IMAGE or POINTCLOUD, or None for a file that is not media (see `detect`).

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
        raise DecodeError(f"{path}: not a {_NOUN[kind]}: by its content it is a {_NOUN[found.kind]}")
    return found


def xyz_header_columns(tokens: list[str]) -> tuple[int, int, int] | None:
    """Where x, y and z are in a header line's tokens ('x,y,z', 'X Y Z nx ny nz', '"x";"y";"z"'), if any."""
    names = [t.strip().strip("\"'").lower() for t in tokens]
    if not {"x", "y", "z"} <= set(names):
        return None
    return names.index("x"), names.index("y"), names.index("z")


def split_row(line: str) -> list[str]:
    """The fields of a text row of points: separated by whitespace, commas or semicolons."""
    return line.replace(",", " ").replace(";", " ").split()


def _claimed(claimed: tuple[str, str] | None, reason: str) -> Detected:
    return Detected(claimed[0], claimed[1], reason) if claimed else Detected(None, "", reason)


def _by_signature(path: Path, head: bytes, size: int, claimed: tuple[str, str] | None) -> Detected | None:
    for magic, kind, fmt in _MAGIC:
        if head.startswith(magic):
            if fmt == "las":
                return Detected(kind, fmt, "unsupported point-cloud format (LAS); convert it to .ply or .pcd")
            return Detected(kind, fmt)
    riff = head[8:12]
    if head[:4] == b"RIFF" and riff == b"WEBP":
        return Detected(IMAGE, "webp")
    if head[:4] in (b"RIFF", b"RF64") and riff in (b"WAVE", b"RF64"):
        return Detected(AUDIO, "wav")
    if head[:4] == b"FORM" and riff in (b"AIFF", b"AIFC"):
        return Detected(AUDIO, "aiff")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return Detected(IMAGE, "avif")
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return Detected(IMAGE, "heif")
        if brand in (b"M4A ", b"M4B "):
            return Detected(AUDIO, "m4a")
    for magic, fmt, extensions in _CONTAINERS:
        if head.startswith(magic) and path.suffix.lower() in extensions:
            return Detected(AUDIO, fmt)
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return Detected(IMAGE, "bmp")
    if _mpeg_audio(head):
        return Detected(AUDIO, "aac" if (head[1] & 0x06) == 0 else "mp3")
    if head.startswith(b"ply") and head[3:4] in (b"\n", b"\r"):
        return _ply(head)
    if head.startswith(b"# .PCD"):
        return Detected(POINTCLOUD, "pcd")
    if head.startswith(NPY_MAGIC):
        return _npy(head, size)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _npz(path, claimed)
    return None


def _mpeg_audio(head: bytes) -> bool:
    """An MPEG audio frame header (MP3 without an ID3 tag) or an ADTS (raw AAC) header at the start."""
    if len(head) < 4 or head[0] != 0xFF or (head[1] & 0xE0) != 0xE0:
        return False
    if (head[1] & 0x06) == 0:  # layer bits 00: ADTS has a 12-bit sync and layer 00; MPEG audio has no layer 0
        return (head[1] & 0xF0) == 0xF0 and (head[2] >> 2) & 0x0F < 13  # a defined sampling-rate index
    version, bitrate, rate = (head[1] >> 3) & 3, head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and bitrate != 15 and rate != 3  # the reserved values: not a frame header


def _ply(head: bytes) -> Detected:
    end = head.find(b"end_header")
    if end < 0:
        return Detected(POINTCLOUD, "ply", "PLY header is incomplete (no end_header line)")
    if not re.search(rb"^format\s+(ascii|binary_little_endian|binary_big_endian)\s", head[:end], re.MULTILINE):
        return Detected(POINTCLOUD, "ply", "PLY header has no valid format line")
    return Detected(POINTCLOUD, "ply")


def _npy(head: bytes, size: int) -> Detected:
    try:
        shape, dtype, offset = read_npy_header(io.BytesIO(head))
    except (ValueError, SyntaxError, EOFError) as exc:  # read_magic/header raise these for broken bytes
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Detected(POINTCLOUD, "npy", f"not a readable .npy array ({message})")
    return Detected(POINTCLOUD, "npy", points_problem(shape, dtype, size - offset))


def _npz(path: Path, claimed: tuple[str, str] | None) -> Detected | None:
    """A ZIP of .npy members is an .npz; any other ZIP (a .docx, a .jar) is not media unless named .npz."""
    npz_name = claimed is not None and claimed[1] == "npz"
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return Detected(POINTCLOUD, "npz", f"not a readable .npz archive ({exc})") if npz_name else None
    if names and all(n.endswith(".npy") for n in names):
        return Detected(POINTCLOUD, "npz")
    if npz_name:
        return Detected(POINTCLOUD, "npz", "a ZIP archive without .npy arrays, not an .npz of points")
    return None


def _by_structure(head: bytes, size: int) -> Detected | None:
    """Binary STL (no signature: an 80-byte header, a triangle count, 50 bytes a triangle) and PCD
    without its comment line (a text header of PCD keys up to DATA, maybe binary data after it)."""
    if len(head) >= 84 and size >= 134:
        count = int.from_bytes(head[80:84], "little")
        if count > 0 and size == 84 + 50 * count:
            return Detected(POINTCLOUD, "stl")
    keys: set[bytes] = set()
    for line in head.split(b"\n", 32)[:32]:  # a PCD header: known keys, one a line, up to DATA
        words = line.split()
        if not words or words[0].startswith(b"#"):
            continue
        if words[0] == b"DATA":
            return Detected(POINTCLOUD, "pcd") if b"FIELDS" in keys else None
        if words[0] not in _PCD_KEYS:
            return None
        keys.add(words[0])
    return None


def _text_lines(head: bytes) -> list[str] | None:
    """The complete lines of `head` when it is text (UTF-8, no NUL bytes), else None."""
    if b"\x00" in head:
        return None
    if len(head) == _PROBE:  # the last line may be cut at the probe's end
        head = head[: head.rfind(b"\n") + 1] or head
    try:
        return head.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        return None


def _is_text(head: bytes) -> bool:
    return _text_lines(head) is not None


def _by_text(head: bytes) -> Detected | None:
    lines = _text_lines(head)
    if lines is None:
        return None
    rows = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith(("#", "//"))][:_SNIFF_ROWS]
    if not rows:
        return None
    first = rows[0].split()[0]
    if first in ("OFF", "COFF", "NOFF"):
        return Detected(POINTCLOUD, "off")
    if first.lower() == "solid" and re.search(r"^\s*(facet|endsolid)\b", "\n".join(lines), re.MULTILINE):
        return Detected(POINTCLOUD, "stl")
    words = [r.split()[0] for r in rows]
    if all(w in _OBJ_KEYS for w in words) and "v" in words:
        return Detected(POINTCLOUD, "obj")
    if all(_NUMBER_ROW.match(r) for r in rows):
        return Detected(POINTCLOUD, "xyz")
    if xyz_header_columns(split_row(rows[0])) and len(rows) > 1 and all(_NUMBER_ROW.match(r) for r in rows[1:]):
        return Detected(POINTCLOUD, "csv")
    return None


def _by_probe(path: Path) -> Detected | None:
    """Formats without a signature above: PIL's and libsndfile's own header probes."""
    from PIL import ImageFile

    from avsearch.media.image import open_image

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
