"""NumPy .npy headers: a file's shape and dtype read without its data, and whether they describe points.

Detection (media/detect.py) and the point-cloud reader (media/pointcloud.py) share these rules, so a
.npy gets one verdict everywhere, and an array is judged by its header before any of it is loaded: a
header that claims 1e10 rows is refused from its 100 bytes, not after a 120 GB allocation, and so is
one that claims more rows than configs/media.toml [pointcloud] max_points, whatever the file holds.
"""

from __future__ import annotations

import math
import warnings
from typing import BinaryIO

import numpy as np

from avsearch.media.config import media_config

MAGIC = b"\x93NUMPY"
# Columns an array of points may have: x y z, then colours, normals, intensity... A wider array (an
# embedding matrix, say) is not a point cloud.
MAX_POINT_COLUMNS = 9


def read_npy_header(fh: BinaryIO) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, offset of the data) of the .npy stream `fh`, read from its start.

    Raises ValueError for a missing magic, an unknown version or a malformed header.
    """
    version = np.lib.format.read_magic(fh)
    with warnings.catch_warnings():
        # numpy warns that a Python-2 header needed extra parsing; the file is read all the same
        warnings.filterwarnings("ignore", message="Reading `.npy` or `.npz` file required additional header")
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        elif version == (3, 0):  # utf-8 field names; numpy has no public reader for this version's header
            shape, _, dtype = np.lib.format._read_array_header(fh, version)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    return tuple(int(n) for n in shape), dtype, fh.tell()


def points_problem(
    shape: tuple[int, ...], dtype: np.dtype, data_bytes: int, max_points: int | None = None
) -> str | None:
    """Why an array of this header is not a cloud of points (one line), or None when it can be one.

    data_bytes: what the file holds after the header; a header announcing more is refused, as is one
    announcing more than max_points rows (default: configs/media.toml [pointcloud]).
    A pickled 0-d object array (np.save of a dict, as in C-MCR's assets) passes: its content is judged
    when it is unpickled.
    """
    if dtype.hasobject:
        if shape == ():
            return None
        return f"holds Python objects of shape {shape}, not point coordinates"
    if dtype.kind not in "fiu":
        return f"point coordinates must be numbers, got dtype {dtype}"
    points = shape[1:] if len(shape) == 3 and shape[0] == 1 else shape  # a batch of one, (1, N, 3)
    if len(points) != 2 or not 3 <= points[1] <= MAX_POINT_COLUMNS:
        return f"expected an (N, 3) array of points (at most {MAX_POINT_COLUMNS} columns), got shape {shape}"
    if points[0] == 0:
        return "the array holds no points"
    need = math.prod(shape) * dtype.itemsize
    if need > data_bytes:
        return f"the header announces a {shape} {dtype} array ({need:,} bytes) but the file holds {data_bytes:,}"
    limit = media_config().pointcloud.max_points if max_points is None else max_points
    if points[0] > limit:
        return f"the header announces {points[0]:,} points, over the {limit:,} limit (max_points, configs/media.toml)"
    return None
