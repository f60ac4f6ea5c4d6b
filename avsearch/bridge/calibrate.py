"""Calibrate a bridge's scores on real pairs a user has (`avsearch calibrate`): audio-image or 3D-image.

The pairs come as row-aligned native embeddings ({modality}.{space}.npy, as `avsearch embed` writes
them) or as a CSV of files (two columns named by modality, e.g. `audio,image`; paths relative to the
CSV's folder), encoded here with the bridge's own encoders. Files that cannot be decoded are skipped
with their reason, and their pairs with them. The fitted calibration (bridge/confidence.py) replaces the
bridge's calibration of that modality pair, marked "from N real pairs".
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from avsearch.bridge.confidence import Calibration, fit_calibration, pair_key, pair_scores
from avsearch.bridge.model import Bridge, BridgeMeta
from avsearch.errors import InputError
from avsearch.modalities import AUDIO, IMAGE, POINTCLOUD

_MEDIA = (AUDIO, IMAGE, POINTCLOUD)
_BATCH = 32


def sides_for(meta: BridgeMeta, a: str, b: str) -> tuple[str, str]:
    """The space each modality of the pair is projected from: a modality that is one side's memory goes
    through that side, the other through the other side (e.g. pointcloud|image in a ULIP-CLIP bridge:
    ulip and clip)."""
    spaces = meta.spaces
    for first, second in ((a, b), (b, a)):
        for i, side in enumerate(meta.sides):
            other = meta.sides[1 - i]
            if side.memory == first and second in (other.memory, meta.overlap):
                return (side.space, other.space) if first == a else (other.space, side.space)
    raise InputError(
        f"bridge {meta.name!r} ({' and '.join(spaces)}) does not connect {a} with {b}: "
        f"it takes {meta.sides[0].memory}, {meta.sides[1].memory} and {meta.overlap}"
    )


def calibrate_embeddings(
    bridge: Bridge, modalities: tuple[str, str], native: tuple[np.ndarray, np.ndarray]
) -> Calibration:
    """The calibration of row-aligned real pairs given as native embeddings of `modalities`."""
    a, b = native
    if len(a) != len(b):
        raise InputError(f"the two sides of the pairs have {len(a)} and {len(b)} rows: they must be row-aligned")
    spaces = sides_for(bridge.meta, *modalities)
    shared = [bridge.project(s, x, modality=m) for s, x, m in zip(spaces, native, modalities, strict=True)]
    return fit_calibration(*pair_scores(*shared), f"{len(a)} real pairs")


def with_calibration(bridge: Bridge, modalities: tuple[str, str], calibration: Calibration) -> Bridge:
    """`bridge` holding `calibration` for the modality pair (the others kept)."""
    calibrations = {**bridge.meta.calibrations, pair_key(*modalities): calibration.to_dict()}
    bridge.meta = replace(bridge.meta, calibrations=calibrations)
    return bridge


def read_embedding_pairs(folder: Path, meta: BridgeMeta) -> tuple[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """The two row-aligned arrays {modality}.{space}.npy of `folder` that this bridge connects."""
    found = {}
    for path in sorted(Path(folder).glob("*.npy")):
        modality, _, space = path.stem.partition(".")
        if modality in _MEDIA and space in meta.spaces:
            found[(modality, space)] = path
    for (ma, sa), pa in found.items():
        for (mb, sb), pb in found.items():
            if ma < mb and sa != sb:
                try:
                    if sides_for(meta, ma, mb) == (sa, sb):
                        return (ma, mb), (_load(pa), _load(pb))
                except InputError:
                    continue
    names = ", ".join(p.name for p in found.values()) or "none"
    raise InputError(f"{folder}: no pair of arrays this bridge connects ({{modality}}.{{space}}.npy; found {names})")


def _load(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from None
    if arr.ndim != 2:
        raise InputError(f"{path}: expected a 2-D array of embeddings, got shape {arr.shape}")
    return np.asarray(arr, np.float32)


Encode = Callable[[str, str, list[str]], tuple[list[int], np.ndarray, list[tuple[str, str]]]]


def read_csv_pairs(path: Path) -> tuple[tuple[str, str], list[tuple[str, str]]]:
    """(modalities, [(file a, file b), ...]) from a CSV whose header names two modalities."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the pairs file ({exc})") from None
    if not rows:
        raise InputError(f"{path}: empty pairs file (a header such as `audio,image`, then one pair a line)")
    header = tuple(h.strip().lower() for h in rows[0])
    if len(header) != 2 or not set(header) <= set(_MEDIA) or header[0] == header[1]:
        raise InputError(f"{path}: the header must name two of {', '.join(_MEDIA)} (e.g. `audio,image`), got {rows[0]}")
    base = path.parent
    pairs = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise InputError(f"{path}:{n}: expected two files, got {len(row)} fields")
        pairs.append(tuple(str((base / cell.strip()).absolute()) for cell in row))
    return (header[0], header[1]), pairs  # type: ignore[return-value]


def encode_pairs(
    modalities: tuple[str, str], pairs: list[tuple[str, str]], encode: Encode, meta: BridgeMeta
) -> tuple[tuple[np.ndarray, np.ndarray], list[tuple[str, str]]]:
    """Native embeddings of both files of every pair that decodes (a pair with a bad file is dropped)."""
    spaces = sides_for(meta, *modalities)
    vectors: list[dict[int, np.ndarray]] = [{}, {}]
    skipped: list[tuple[str, str]] = []
    for side in (0, 1):
        encoder = meta.side(spaces[side]).encoder
        files = [p[side] for p in pairs]
        for start in range(0, len(files), _BATCH):
            ok, vecs, bad = encode(encoder, modalities[side], files[start : start + _BATCH])
            vectors[side].update({start + i: v for i, v in zip(ok, vecs, strict=True)})
            skipped += bad
    kept = [i for i in range(len(pairs)) if i in vectors[0] and i in vectors[1]]
    if not kept:
        raise InputError("no pair could be encoded (every pair has a file that cannot be decoded)")
    a = np.stack([vectors[0][i] for i in kept])
    b = np.stack([vectors[1][i] for i in kept])
    return (a, b), skipped
