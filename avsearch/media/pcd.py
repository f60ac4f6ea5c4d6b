"""PCL's .pcd point-cloud format (v0.7 header; DATA ascii or binary) -> (N, 3) x y z columns.

No maintained pure-Python PCD reader exists beside heavy stacks (open3d), and the format is a short
text header followed by a table, so it is parsed here. `binary_compressed` (LZF) is refused with a
message saying how to convert the file. The point count the header announces (POINTS, else WIDTH x
HEIGHT), and the rows of ASCII data, are held to configs/media.toml [pointcloud] max_points before the
table is parsed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avsearch.errors import DecodeError
from avsearch.media.config import media_config

_TYPES = {("F", 4): "<f4", ("F", 8): "<f8", ("I", 1): "<i1", ("I", 2): "<i2", ("I", 4): "<i4",
          ("I", 8): "<i8", ("U", 1): "<u1", ("U", 2): "<u2", ("U", 4): "<u4", ("U", 8): "<u8"}  # fmt: skip
_HEADER_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS")


def read_pcd(path: Path) -> np.ndarray:
    """Read a .pcd file -> (N, 3) float64 x y z (NaN rows, as in organised clouds, are kept)."""
    raw = path.read_bytes()
    header: dict[str, list[str]] = {}
    offset = 0
    while True:
        end = raw.find(b"\n", offset)
        if end < 0:
            raise DecodeError(f"{path}: PCD header has no DATA line")
        line = raw[offset:end].decode("ascii", errors="replace").strip()
        offset = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        key = key.upper()
        if key == "DATA":
            data_kind = values[0].lower() if values else ""
            break
        if key not in _HEADER_KEYS:
            raise DecodeError(f"{path}: not a PCD file (unexpected header line {line[:40]!r})")
        header[key] = values
    fields = header.get("FIELDS")
    if not fields or not {"x", "y", "z"} <= set(fields):
        raise DecodeError(f"{path}: PCD FIELDS must include x y z, got {fields}")
    n_fields = len(fields)
    counts = [int(c) for c in header.get("COUNT", ["1"] * n_fields)]
    if "POINTS" in header:
        n_points = int(header["POINTS"][0])
    else:
        n_points = int(header.get("WIDTH", ["0"])[0]) * int(header.get("HEIGHT", ["1"])[0])
    limit = media_config().pointcloud.max_points
    if n_points > limit:
        raise DecodeError(
            f"{path}: PCD header announces {n_points:,} points, over the {limit:,} limit "
            "(max_points, configs/media.toml)"
        )
    if data_kind == "ascii":
        rows = raw.count(b"\n", offset) + (not raw.endswith(b"\n"))  # counted on the bytes: nothing parsed yet
        if rows > limit:
            raise DecodeError(
                f"{path}: PCD data has {rows:,} lines, over the {limit:,} point limit (max_points, configs/media.toml)"
            )
        text = raw[offset:].decode("ascii", errors="strict")
        table = np.loadtxt(text.splitlines(), dtype=np.float64, ndmin=2)
        cols = np.cumsum([0, *counts])
        return np.stack([table[:, cols[fields.index(a)]] for a in "xyz"], axis=1)
    if data_kind == "binary":
        sizes = [int(s) for s in header.get("SIZE", [])]
        types = [t.upper() for t in header.get("TYPE", [])]
        if len(sizes) != n_fields or len(types) != n_fields:
            raise DecodeError(f"{path}: PCD SIZE/TYPE do not match FIELDS")
        try:
            dtype = np.dtype(
                [
                    (f"{name}_{i}", _TYPES[(t, s)], (c,))
                    for i, (name, t, s, c) in enumerate(zip(fields, types, sizes, counts, strict=True))
                ]  # fmt: skip
            )
        except KeyError as exc:
            raise DecodeError(f"{path}: unsupported PCD field type {exc.args[0]}") from exc
        if len(raw) - offset < n_points * dtype.itemsize:
            raise DecodeError(f"{path}: PCD data is truncated ({n_points} points announced)")
        table = np.frombuffer(raw, dtype=dtype, count=n_points, offset=offset)
        return np.stack([table[f"{a}_{fields.index(a)}"][:, 0].astype(np.float64) for a in "xyz"], axis=1)
    if data_kind == "binary_compressed":
        raise DecodeError(
            f"{path}: PCD 'binary_compressed' data is not supported; re-save it as binary or ascii "
            "(e.g. pcl_convert_pcd_ascii_binary IN OUT 1)"
        )
    raise DecodeError(f"{path}: unknown PCD DATA kind {data_kind!r}")
