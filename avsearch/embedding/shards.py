"""On-disk progress of one embedding job: numbered shard files, written atomically, then joined.

Layout under OUT/.partial/{modality}.{space}/:
  job.json                 the job key (encoder fingerprint + hash of the ordered inputs)
  shard-000000.npy         (rows, dim) float32 vectors of the shard's kept inputs
  shard-000000.json        {"rows": [source, ...], "skipped": [[source, reason], ...]}; written last,
                           so a shard counts as done only when both files are complete.
A run killed at any point loses at most the shard in progress.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.atomic import atomic_path, write_bytes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    write_bytes(path, data, fsync=True)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, fsync=True) as tmp:
        np.save(tmp, array)


class ShardStore:
    """Shards of one job (one {modality}.{space} output)."""

    def __init__(self, folder: Path, job_key: str) -> None:
        self.folder = folder
        key_file = folder / "job.json"
        if key_file.is_file():
            try:
                stale = json.loads(key_file.read_text()).get("key") != job_key
            except (OSError, ValueError):
                stale = True
            if stale:  # other inputs or another encoder: earlier shards do not apply
                shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not key_file.is_file():
            atomic_write_bytes(key_file, json.dumps({"key": job_key}).encode())

    def _paths(self, index: int) -> tuple[Path, Path]:
        return self.folder / f"shard-{index:06d}.npy", self.folder / f"shard-{index:06d}.json"

    def done(self, index: int) -> bool:
        vec, meta = self._paths(index)
        return vec.is_file() and meta.is_file()

    def write(self, index: int, vectors: np.ndarray, rows: list[str], skipped: list[list[str]]) -> None:
        vec, meta = self._paths(index)
        atomic_save_npy(vec, np.ascontiguousarray(vectors, dtype=np.float32))
        atomic_write_bytes(meta, json.dumps({"rows": rows, "skipped": skipped}).encode())

    def read(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        vec, meta = self._paths(index)
        return np.load(vec), json.loads(meta.read_text())

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
