"""File metadata that searches filter on, read cheaply at index time, and the user's tags sidecar.

Content fields come from headers where the format has one: a sound's duration and sample rate from
libsndfile's header read (soundfile.info), a picture's width and height from PIL's lazy open (as shown:
EXIF rotations of 90 degrees swap them), a .npy cloud's point count from its array header; other 3D
files are read once more for their point count (a mesh counts its vertices). A file whose metadata
cannot be read keeps nulls: the decoders, not this module, decide whether a file is media.

Tags come from a sidecar keyed by path relative to the indexed root (forward slashes):
- CSV (.csv): a header row with a `path` column and a `tags` column; tags inside a cell are separated
  by `;` or `,` (quote the cell for commas); other columns are ignored;
- JSON lines (.jsonl, .ndjson, .json): one object a line, {"path": "field/a.wav", "tags": ["bird"]}
  (a string of `;`/`,`-separated tags also works).
A path listed on several rows gets the union of its tags. Tags are case-sensitive, surrounding spaces
trimmed. `avsearch index ROOT --tags FILE` names the sidecar; without it, the first of the names in
configs/metadata.toml [tags] sidecar found at ROOT is read (avsearch-tags.csv, avsearch-tags.jsonl).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

from avsearch.errors import ConfigError, InputError
from avsearch.media.walk import printable
from avsearch.modalities import AUDIO, IMAGE, POINTCLOUD
from avsearch.settings import load_sections

log = logging.getLogger(__name__)

CONFIG_NAME = "metadata.toml"
_TAG_SPLIT = re.compile(r"[;,]")
_MESH_FORMATS = ("ply", "obj", "off", "stl")
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that turn the picture by 90 degrees


@dataclass(frozen=True)
class TagsConfig:
    # Sidecar names looked for at the indexed root when `avsearch index` gets no --tags (first found wins).
    sidecar: tuple[str, ...] = ("avsearch-tags.csv", "avsearch-tags.jsonl")


@dataclass(frozen=True)
class FilterSearchConfig:
    # A filter that keeps at most this many rows is searched exactly over those rows' vectors, read from
    # the table (pre-filtering); more rows go through the FAISS index with an ID selector.
    prefilter_max_rows: int = 20_000
    # Filter results (row sets) kept per search engine, so repeated queries with one filter skip the scan.
    cached_filters: int = 8

    def __post_init__(self) -> None:
        for name in ("prefilter_max_rows", "cached_filters"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"metadata [search] {name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True)
class MetadataConfig:
    tags: TagsConfig = TagsConfig()
    search: FilterSearchConfig = FilterSearchConfig()


def load_metadata_config(path: str | Path | None = None) -> MetadataConfig:
    """Read metadata.toml (the bundled one unless `path` is given); missing keys take the defaults."""
    return load_sections(MetadataConfig, CONFIG_NAME, path)


@lru_cache(maxsize=1)
def metadata_config() -> MetadataConfig:
    """The bundled settings, read once per process."""
    return load_metadata_config()


@dataclass(frozen=True)
class MediaInfo:
    """What a file's content says about it; None where unknown or not of its kind."""

    duration: float | None = None  # seconds (audio)
    sample_rate: int | None = None  # Hz (audio)
    width: int | None = None  # pixels, as shown (images)
    height: int | None = None
    points: int | None = None  # points in the file; a mesh's vertices (point clouds)


@dataclass(frozen=True)
class FileMeta:
    """A row's filterable metadata: where the file sits, its user tags and its content's MediaInfo."""

    folder: str | None = None  # directory relative to the indexed root, "/"-separated; "" at the root
    ext: str | None = None  # lower-case extension without the dot ("wav"); "" when the name has none
    tags: tuple[str, ...] = ()
    info: MediaInfo = MediaInfo()


def read_media_info(path: str | Path, modality: str) -> MediaInfo:
    """Header-level metadata of a decodable file of `modality`; nulls for whatever cannot be read."""
    try:
        if modality in (AUDIO, IMAGE) and _is_video(Path(path)):
            return _video_info(Path(path), modality)
        if modality == AUDIO:
            return _audio_info(Path(path))
        if modality == IMAGE:
            return _image_info(Path(path))
        if modality == POINTCLOUD:
            return MediaInfo(points=_point_count(Path(path)))
    except Exception as exc:  # metadata is optional: a file the encoder read is indexed with nulls
        log.info("%s: metadata not readable (%s); indexed without it", printable(str(path)), exc)
    return MediaInfo()


def _is_video(path: Path) -> bool:
    from avsearch.media.signatures import VIDEO_HEAD, is_video

    with path.open("rb") as fh:
        return is_video(fh.read(VIDEO_HEAD))


def _video_info(path: Path, modality: str) -> MediaInfo:
    """A video's rows: its duration, and its frame size (image rows) or its sound's rate (audio rows)."""
    from avsearch.media.video import probe

    info = probe(path)
    if modality == IMAGE:
        return MediaInfo(duration=info.duration, width=info.width or None, height=info.height or None)
    return MediaInfo(duration=info.duration, sample_rate=info.audio_rate or None)


def _audio_info(path: Path) -> MediaInfo:
    import soundfile as sf

    info = sf.info(os.fsencode(path))  # bytes: any file name
    rate = int(info.samplerate)
    duration = float(info.frames) / rate if rate > 0 and info.frames >= 0 else None
    return MediaInfo(duration=duration, sample_rate=rate or None)


def _image_info(path: Path) -> MediaInfo:
    from avsearch.media.image import open_image

    with open_image(path) as img:  # header only: nothing is decoded
        width, height = img.size
        orientation = img.getexif().get(0x0112)
    if orientation in _ROTATED:
        width, height = height, width
    return MediaInfo(width=int(width), height=int(height))


def _point_count(path: Path) -> int | None:
    from avsearch.media.detect import detect
    from avsearch.media.npyfile import read_npy_header
    from avsearch.media.pointcloud import read_xyz

    fmt = detect(path).format
    if fmt == "npy":
        with path.open("rb") as fh:
            shape, dtype, _ = read_npy_header(fh)
        if not dtype.hasobject:
            return int(shape[1] if len(shape) == 3 else shape[0])
    if fmt in _MESH_FORMATS:
        import trimesh

        with path.open("rb") as fh:
            loaded = trimesh.load(fh, file_type=fmt)
        vertices = getattr(loaded, "vertices", None)
        if vertices is None and isinstance(loaded, trimesh.Scene):
            vertices = [v for g in loaded.geometry.values() for v in getattr(g, "vertices", [])]
        return len(vertices) if vertices is not None else None
    return int(read_xyz(path).shape[0])


def path_fields(path: str, root: str | Path) -> tuple[str, str]:
    """(folder relative to root, lower-case extension without the dot) of an indexed file."""
    rel = PurePosixPath(*Path(os.path.relpath(path, root)).parts)
    folder = printable(str(rel.parent)) if str(rel.parent) != "." else ""
    return folder, printable(rel.suffix[1:].lower())


def relative_key(path: str, root: str | Path) -> str:
    """How a sidecar names a file: its path relative to the root, "/"-separated, as printable text."""
    return printable(PurePosixPath(*Path(os.path.relpath(path, root)).parts).as_posix())


def split_tags(value: object, where: str) -> tuple[str, ...]:
    """Tags from a list of strings or a `;`/`,`-separated string, trimmed, empty ones dropped."""
    if value is None:
        return ()
    if isinstance(value, str):
        parts = _TAG_SPLIT.split(value)
    elif isinstance(value, list) and all(isinstance(t, str) for t in value):
        parts = value
    else:
        raise InputError(f"{where}: tags must be a string or a list of strings, got {value!r}")
    return tuple(t.strip() for t in parts if t.strip())


def find_sidecar(root: Path, given: str | Path | None) -> Path | None:
    """The tags file of a run: the one given (it must exist), else the first configured name at root."""
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            raise InputError(f"{path}: tags file not found (--tags)")
        return path
    for name in metadata_config().tags.sidecar:
        if (root / name).is_file():
            return root / name
    return None


def read_tags(path: Path) -> dict[str, tuple[str, ...]]:
    """A tags sidecar: relative path -> sorted tags. InputError naming the file and line when malformed."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the tags file ({exc})") from exc
    rows = _read_csv(path, text) if path.suffix.lower() in (".csv", ".tsv") else _read_jsonl(path, text)
    tags: dict[str, set[str]] = {}
    for rel, found in rows:
        key = PurePosixPath(rel.replace("\\", "/").removeprefix("./")).as_posix()
        tags.setdefault(key, set()).update(found)
    return {k: tuple(sorted(v)) for k, v in tags.items()}


def _read_csv(path: Path, text: str) -> list[tuple[str, tuple[str, ...]]]:
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    if reader.fieldnames is None or "path" not in reader.fieldnames or "tags" not in reader.fieldnames:
        raise InputError(f"{path}: a tags CSV needs a header row with `path` and `tags` columns")
    out = []
    for row in reader:
        if row.get("path"):
            out.append((row["path"].strip(), split_tags(row.get("tags") or "", f"{path}:{reader.line_num}")))
    return out


def _read_jsonl(path: Path, text: str) -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not a JSON line ({exc.msg})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            raise InputError(f'{where}: expected {{"path": "...", "tags": [...]}}')
        out.append((row["path"], split_tags(row.get("tags"), where)))
    return out
