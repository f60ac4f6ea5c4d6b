"""Point-cloud files -> (8192, 3) float32 clouds, centred on the centroid and scaled to the unit sphere.

Files are read by their content (media/detect.py), whatever their name: a PLY named .png is read as
a PLY. Readers: .ply (ascii/binary; meshes are sampled on the surface), .obj/.off/.stl meshes (ascii
and binary STL; surface-sampled; vertices when a file has no faces), .npy (an (N, >=3) array or a
pickled dict with an 'xyz' key, as in C-MCR's assets), .npz (an 'xyz' key or a single array), .pcd
(ascii/binary, with or without its comment line) and text rows (.xyz/.txt/.csv: columns separated by
whitespace, commas or semicolons, x y z first or named by a header line such as 'x,y,z'). Arrays are
judged by their .npy header before their data is read (media/npyfile.py). Extra columns (normals,
colours) are dropped: ULIP-2 PointBERT reads xyz only.

Resampling is deterministic, so a file always gives the same cloud: larger clouds are reduced by
farthest-point sampling (started from the point farthest from the centroid), smaller ones are padded
with repeats drawn by a fixed-seed generator, meshes are sampled with a fixed seed.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsearch.errors import DecodeError
from avsearch.media.config import media_config
from avsearch.media.detect import require
from avsearch.media.meshheader import check_declared
from avsearch.media.npyfile import points_problem, read_npy_header
from avsearch.media.pcd import read_pcd
from avsearch.media.signatures import split_row, xyz_header_columns
from avsearch.modalities import POINTCLOUD

logger = logging.getLogger(__name__)

MESH_EXTENSIONS = (".obj", ".off", ".stl")
# Names a 3D data set's files have (evaluation lists a data set by them); single files are read by content.
POINTCLOUD_EXTENSIONS = (".ply", ".npy", ".npz", ".pcd", ".xyz", ".txt", ".csv", *MESH_EXTENSIONS)
_MESH_FORMATS = ("obj", "off", "stl")
XYZ_KEYS = ("xyz", "points", "pos", "pc")  # accepted names of the coordinates in .npz / dict .npy
_TEXT_CHUNK = 65_536  # text rows turned into numbers at a time (their Python strings cost ~200 B a row)


@dataclass(frozen=True)
class PointCloudConfig:
    num_points: int = 8192  # ULIP-2 PointBERT's evaluation size
    mesh_samples: int = 10000  # surface samples per mesh before FPS (as ModelNet40's resampled clouds)
    fps_input_cap: int = 65536  # larger clouds are first thinned by a fixed-seed random subset (speed)
    min_points: int = 32  # fewer distinct points cannot fill one PointBERT group
    seed: int = 0


DEFAULT = PointCloudConfig()


def load_pointcloud(path: str | Path, cfg: PointCloudConfig = DEFAULT) -> np.ndarray:
    """Read a point-cloud or mesh file -> (cfg.num_points, 3) float32, centred, max radius 1.

    Raises DecodeError naming the file and the reason when it cannot be read.
    """
    path = Path(path)
    xyz = read_xyz(path, cfg)
    return prepare_points(xyz, cfg, source=str(path))


def read_xyz(path: Path, cfg: PointCloudConfig = DEFAULT) -> np.ndarray:
    """The raw coordinates of a file, by its content: (N, 3) (meshes: surface samples).

    Counts a header announces (PLY, OFF, STL, PCD, .npy/.npz) and the rows of text files are held to
    configs/media.toml [pointcloud] max_points before the data is parsed; what a file holds without
    announcing it (OBJ, ASCII STL, a pickled dict) is held to it after.
    """
    fmt = require(path, POINTCLOUD).format
    try:
        check_declared(path, fmt)
        if fmt == "npy":
            arr = _read_npy(path)
        elif fmt == "npz":
            arr = _read_npz(path)
        elif fmt == "pcd":
            arr = read_pcd(path)
        elif fmt in ("xyz", "csv"):
            arr = _read_text(path)
        elif fmt in ("ply", *_MESH_FORMATS):
            arr = _read_trimesh(path, fmt, cfg)
        else:
            raise DecodeError(f"{path}: unsupported point-cloud format {fmt!r}")
    except DecodeError:
        raise
    except Exception as exc:  # parsers raise many types for malformed files; report them as one
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DecodeError(f"{path}: cannot read .{fmt} file ({reason})") from exc
    xyz = _as_xyz(arr, path)
    limit = media_config().pointcloud.max_points
    if len(xyz) > limit:
        raise DecodeError(
            f"{path}: holds {len(xyz):,} points, over the {limit:,} limit (max_points, configs/media.toml)"
        )
    return xyz


def prepare_points(xyz: np.ndarray, cfg: PointCloudConfig = DEFAULT, source: str = "array") -> np.ndarray:
    """(N, >=3) coordinates -> (cfg.num_points, 3) float32: finite rows, resampled, unit sphere."""
    xyz = _as_xyz(np.asarray(xyz), source).astype(np.float64)
    finite = np.isfinite(xyz).all(axis=1)
    if not finite.all():
        logger.info("%s: dropped %d points with NaN/inf coordinates", source, int((~finite).sum()))
        xyz = xyz[finite]
    if len(xyz) < cfg.min_points:
        raise DecodeError(f"{source}: only {len(xyz)} valid points, at least {cfg.min_points} are needed")
    xyz = resample(xyz, cfg)
    xyz = xyz - xyz.mean(axis=0)
    radius = float(np.sqrt((xyz**2).sum(axis=1)).max())
    if not radius > 1e-12:
        raise DecodeError(f"{source}: all points coincide, the cloud has no extent")
    return (xyz / radius).astype(np.float32)


def resample(xyz: np.ndarray, cfg: PointCloudConfig = DEFAULT) -> np.ndarray:
    """(N, 3) -> (cfg.num_points, 3), deterministically (see the module docstring)."""
    n = cfg.num_points
    rng = np.random.default_rng(cfg.seed)
    if len(xyz) > cfg.fps_input_cap:
        xyz = xyz[np.sort(rng.choice(len(xyz), cfg.fps_input_cap, replace=False))]
    if len(xyz) > n:
        return xyz[farthest_point_indices(xyz, n)]
    if len(xyz) < n:
        return np.concatenate([xyz, xyz[rng.integers(0, len(xyz), n - len(xyz))]])
    return xyz


def farthest_point_indices(xyz: np.ndarray, n: int) -> np.ndarray:
    """Farthest-point sampling of n indices from (N, 3), started from the point farthest from the centroid."""
    xyz = xyz.astype(np.float32)  # float32 halves the memory traffic of the N-wide loop
    idx = np.empty(n, dtype=np.int64)
    min_dist = np.full(len(xyz), np.inf, dtype=np.float32)
    cur = int(((xyz - xyz.mean(axis=0)) ** 2).sum(axis=1).argmax())
    for i in range(n):
        idx[i] = cur
        d = xyz - xyz[cur]
        np.minimum(min_dist, np.einsum("ij,ij->i", d, d), out=min_dist)
        cur = int(min_dist.argmax())
    return idx


def _as_xyz(arr: object, source: object) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]  # a batch of one, e.g. (1, N, 3)
    if a.ndim != 2 or a.shape[1] < 3:
        raise DecodeError(f"{source}: expected an (N, 3) array of points, got shape {a.shape}")
    if a.dtype.kind not in "fiu":
        raise DecodeError(f"{source}: point coordinates must be numbers, got dtype {a.dtype}")
    return a[:, :3]


def _pick_key(keys: list[str], path: Path) -> str:
    for key in XYZ_KEYS:
        if key in keys:
            return key
    if len(keys) == 1:
        return keys[0]
    raise DecodeError(f"{path}: no 'xyz' array among the keys {sorted(map(str, keys))}")


def _pick_xyz(named: dict, path: Path) -> np.ndarray:
    for key in XYZ_KEYS:
        if key in named:
            return np.asarray(named[key])
    arrays = [k for k, v in named.items() if isinstance(v, np.ndarray)]
    if len(arrays) == 1:
        return np.asarray(named[arrays[0]])
    raise DecodeError(f"{path}: no 'xyz' array among the keys {sorted(map(str, named))}")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only: a .npy file cannot run code when read."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays and dicts")


def _read_npy(path: Path) -> np.ndarray:
    with path.open("rb") as fh:
        shape, dtype, offset = read_npy_header(fh)
        problem = points_problem(shape, dtype, path.stat().st_size - offset)
        if problem is not None:  # judged from the header: a wrong or huge array is never loaded
            raise DecodeError(f"{path}: {problem}")
        if not dtype.hasobject:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        # C-MCR's assets: np.save of a dict {'xyz': float16 (N, 3), ...} -> a pickled 0-d object array.
        obj = _NumpyOnlyUnpickler(fh).load()
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
        obj = obj.item()
    if isinstance(obj, dict):
        return _pick_xyz(obj, path)
    raise DecodeError(f"{path}: holds a pickled {type(obj).__name__}, not points or a dict of arrays")


def _read_npz(path: Path) -> np.ndarray:
    with zipfile.ZipFile(path) as zf:
        members = {n.removesuffix(".npy"): n for n in zf.namelist() if n.endswith(".npy")}
        key = _pick_key(list(members), path)
        member = zf.getinfo(members[key])
        with zf.open(member) as fh:
            shape, dtype, offset = read_npy_header(fh)
        problem = points_problem(shape, dtype, member.file_size - offset)
        if problem is None and dtype.hasobject:
            problem = "holds pickled Python objects, not point coordinates"
        if problem is not None:  # judged from the member's header before it is decompressed
            raise DecodeError(f"{path}: array {key!r} {problem}")
        with zf.open(member) as fh:
            return np.lib.format.read_array(fh, allow_pickle=False)


def _text_lines(path: Path) -> Iterator[str]:
    """The file's lines as str.splitlines gives them, read a line at a time (strict UTF-8, a BOM dropped):
    a text file is never held whole, only its numbers are."""
    with path.open("rb") as fh:
        encoding = "utf-8-sig"
        for raw in fh:
            yield from raw.decode(encoding, errors="strict").splitlines()
            encoding = "utf-8"


def _text_rows(path: Path) -> Iterator[list[str]]:
    for line in _text_lines(path):
        if not line.lstrip().startswith(("#", "//")):
            row = split_row(line)
            if row:
                yield row


def _read_text(path: Path) -> np.ndarray:
    """Rows of numbers, in two passes: the first counts rows (held to max_points before anything is
    kept) and finds the narrowest, the second fills an (N, 3) array _TEXT_CHUNK rows at a time."""
    limit = media_config().pointcloud.max_points
    columns, count, narrowest = None, 0, 0
    for number, row in enumerate(_text_rows(path)):
        if number == 0:
            columns = xyz_header_columns(row)
            if columns is not None:
                continue  # a header line naming the columns, as in a CSV export
        count += 1
        if count > limit:
            raise DecodeError(
                f"{path}: more than {limit:,} rows of points, over the limit (max_points, configs/media.toml)"
            )
        narrowest = len(row) if count == 1 else min(narrowest, len(row))
    header = columns is not None
    columns = columns or (0, 1, 2)
    if count == 0:
        raise DecodeError(f"{path}: the file holds no points")
    if narrowest <= max(columns):
        raise DecodeError(f"{path}: a line has fewer than 3 columns (x y z expected)")
    out = np.empty((count, 3), np.float64)
    done, chunk = 0, []
    rows = _text_rows(path)
    if header:
        next(rows)
    for row in rows:
        chunk.append([row[i] for i in columns])
        if len(chunk) == _TEXT_CHUNK:
            done = _put_rows(out, done, chunk, path)
            chunk = []
    done = _put_rows(out, done, chunk, path)
    if done != count:
        raise DecodeError(f"{path}: the file changed while it was read")
    return out


def _put_rows(out: np.ndarray, done: int, chunk: list[list[str]], path: Path) -> int:
    if done + len(chunk) > len(out):
        raise DecodeError(f"{path}: the file changed while it was read")
    try:
        out[done : done + len(chunk)] = np.array(chunk, dtype=np.float64).reshape(-1, 3)
    except ValueError as exc:
        raise DecodeError(f"{path}: non-numeric coordinate ({exc})") from exc
    return done + len(chunk)


def _read_trimesh(path: Path, fmt: str, cfg: PointCloudConfig) -> np.ndarray:
    import trimesh  # imported here: only mesh and PLY files need it

    with path.open("rb") as fh:  # the detected format, not the name, chooses trimesh's parser
        loaded = trimesh.load(fh, file_type=fmt, force="mesh" if fmt in _MESH_FORMATS else None)
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_geometry() if len(loaded.geometry) else None
    if isinstance(loaded, trimesh.Trimesh) and len(loaded.faces) and loaded.area > 0:
        points, _ = trimesh.sample.sample_surface(loaded, cfg.mesh_samples, seed=cfg.seed)
        return np.asarray(points)
    vertices = getattr(loaded, "vertices", None)
    if vertices is None or len(vertices) == 0:
        raise DecodeError(f"{path}: the file holds no vertices")
    return np.asarray(vertices)  # a point-cloud PLY, or a mesh file without faces
