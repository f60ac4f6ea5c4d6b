"""What a file's first bytes say it is: the signature tables and content sniffers behind media/detect.py.

Signatures (magic bytes, with a header check where one is cheap), 3D formats without a signature
(binary STL by its size, PCD without its comment line) and text formats (OFF, OBJ, ASCII STL, rows of
numbers, CSV with an x,y,z header), plus the extensions each format claims. Pure functions of the
bytes (and, for .npz, the ZIP's member names): no decoder is imported here, so every media module,
detect.py included, can import this one without a circle.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from avsearch.media.npyfile import MAGIC as NPY_MAGIC
from avsearch.media.npyfile import points_problem, read_npy_header
from avsearch.modalities import AUDIO, IMAGE, POINTCLOUD, VIDEO

PROBE = 65_536  # bytes read to decide: signatures and the headers of text formats fit in it
NOUN = {AUDIO: "sound", IMAGE: "picture", POINTCLOUD: "point cloud or mesh", VIDEO: "video"}

# Formats each extension claims; the content decides first, the name only when the content matches
# nothing. .txt and .csv claim nothing: they are point clouds only when their content is.
EXTENSIONS: dict[str, tuple[str, str]] = {
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
    **{e: (VIDEO, "mp4") for e in (".mp4", ".m4v")},
    **{e: (VIDEO, e[1:]) for e in (".mov", ".mkv", ".webm", ".avi")},
}
# Formats whose files are text: when such a name holds text that step 2 did not recognise, its parser
# gives the precise reason ("non-numeric coordinate", "fewer than 3 columns") rather than this module.
TEXT_FORMATS = {"xyz", "obj", "off", "pcd", "stl"}

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

# ISO base media brands that are pictures or sounds, not videos (HEIF/AVIF, Canon raw, iTunes audio)
_NOT_VIDEO_BRANDS = {
    b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis",
    b"crx ", b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B ",
}  # fmt: skip
_QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}  # older .mov files start with these
VIDEO_HEAD = 64  # bytes `is_video` looks at
_EBML = b"\x1a\x45\xdf\xa3"  # Matroska and WebM
_AUDIO_EBML = (".mka", ".weba")  # Matroska named as a sound: the extension says it holds no pictures


@dataclass(frozen=True)
class Detected:
    """One file's verdict.

    kind: AUDIO, IMAGE, POINTCLOUD or VIDEO; None when the file is not media.
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


def is_video(head: bytes) -> bool:
    """Whether the first bytes of a file are a video container's: an ISO base media file (MP4, MOV, M4V,
    3GP) other than a picture's or a sound's brand, an older QuickTime file, Matroska/WebM (EBML), AVI."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        size = int.from_bytes(head[:4], "big")
        return size >= 16 and head[8:12] not in _NOT_VIDEO_BRANDS
    if len(head) >= 8 and head[4:8] in _QUICKTIME_ATOMS:
        size = int.from_bytes(head[:4], "big")
        return size == 1 or size >= 8  # 1: a 64-bit size follows
    if head.startswith(_EBML):  # EBML: Matroska or WebM (an audio-only .mka too)
        return b"matroska" in head[:VIDEO_HEAD] or b"webm" in head[:VIDEO_HEAD] or len(head) < VIDEO_HEAD
    return head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX")


def _video_format(head: bytes) -> str:
    if head.startswith(_EBML):
        return "webm" if b"webm" in head[:VIDEO_HEAD] else "matroska"
    return "avi" if head[:4] == b"RIFF" else "mp4"


def by_content(path: Path, head: bytes, size: int, claimed: tuple[str, str] | None) -> Detected | None:
    """The verdict the bytes alone give (signatures, then structure, then text), or None."""
    return by_signature(path, head, size, claimed) or _by_structure(head, size) or _by_text(head)


def xyz_header_columns(tokens: list[str]) -> tuple[int, int, int] | None:
    """Where x, y and z are in a header line's tokens ('x,y,z', 'X Y Z nx ny nz', '"x";"y";"z"'), if any."""
    names = [t.strip().strip("\"'").lower() for t in tokens]
    if not {"x", "y", "z"} <= set(names):
        return None
    return names.index("x"), names.index("y"), names.index("z")


def split_row(line: str) -> list[str]:
    """The fields of a text row of points: separated by whitespace, commas or semicolons."""
    return line.replace(",", " ").replace(";", " ").split()


def by_signature(path: Path, head: bytes, size: int, claimed: tuple[str, str] | None) -> Detected | None:
    for magic, kind, fmt in _MAGIC:
        if head.startswith(magic):
            if fmt == "las":
                return Detected(kind, fmt, "unsupported point-cloud format (LAS); convert it to .ply or .pcd")
            return Detected(kind, fmt)
    if is_video(head) and not (head.startswith(_EBML) and path.suffix.lower() in _AUDIO_EBML):
        return Detected(VIDEO, _video_format(head))  # before ftyp and RIFF: an .mp4 is not its brand's picture
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
    if len(head) == PROBE:  # the last line may be cut at the probe's end
        head = head[: head.rfind(b"\n") + 1] or head
    try:
        return head.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        return None


def is_text(head: bytes) -> bool:
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
