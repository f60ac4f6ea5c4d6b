"""FAISS indexes on disk beside the tables: ann/<name>.json names the files of the current build.

A build writes `<name>-<build id>.faiss` and `<name>-<build id>.paths.arrow` first and then replaces
the JSON atomically, so a reader sees either the previous complete build or the new one. Row i of the
FAISS index is path i of the paths file. `table_version` records which table version it was built from;
a stale index (the table moved on after a killed run) is not used for search.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from avsearch.atomic import write_text
from avsearch.store.ann import IVF_FLAT, AnnParams, maybe_gpu, set_nprobe, to_cpu
from avsearch.store.torch_search import TorchExact, torch_gpu

log = logging.getLogger(__name__)

ANN_DIR = "ann"


def ann_name(modality: str, column: str) -> str:
    return f"{modality}.{column}"


@dataclass
class LoadedAnn:
    """A FAISS index with its parameters and row -> path mapping."""

    name: str
    index: faiss.Index  # CPU index (selectors work on every kind)
    params: AnnParams
    paths: list[str]
    table_version: int
    gpu_index: faiss.Index | None = None  # copy on GPU when FAISS has GPUs

    @property
    def engine(self) -> str:
        """What answers unfiltered searches: "faiss-gpu", "torch-cuda" (exact, when FAISS cannot use the
        GPU) or "faiss-cpu"; filtered searches run on the CPU."""
        if self.gpu_index is None:
            return "faiss-cpu"
        return "torch-cuda" if isinstance(self.gpu_index, TorchExact) else "faiss-gpu"

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """queries (M, d) float32 -> (scores (M, k), row ids (M, k)); ids -1 where fewer than k.

        allowed: row ids a metadata filter kept (None = all rows).
        """
        queries = np.ascontiguousarray(queries, np.float32)
        k = max(1, min(k, len(self.paths)))
        if allowed is None and self.gpu_index is not None:
            try:
                return self.gpu_index.search(queries, k)
            except Exception as exc:  # a GPU that fails (memory, driver) costs speed, never the answer
                log.warning("FAISS GPU search of %s failed, searching on the CPU from now on: %s", self.name, exc)
                self.gpu_index = None
        if allowed is None:
            return self.index.search(queries, k)
        sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, np.int64))
        if self.params.kind == "flat":
            params = faiss.SearchParameters(sel=sel)
        else:
            params = faiss.SearchParametersIVF(sel=sel, nprobe=self.params.nprobe)
        return self.index.search(queries, k, params=params)


def _dir(index_dir: Path) -> Path:
    return Path(index_dir) / ANN_DIR


def read_ann_meta(index_dir: str | Path, name: str) -> dict[str, Any] | None:
    path = _dir(Path(index_dir)) / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def save_ann(
    index_dir: str | Path,
    name: str,
    index: faiss.Index,
    params: AnnParams,
    paths: list[str],
    table_version: int,
) -> dict[str, Any]:
    """Write index + paths under a fresh build id, then point ann/<name>.json at them; returns the JSON."""
    folder = _dir(Path(index_dir))
    folder.mkdir(parents=True, exist_ok=True)
    build = uuid.uuid4().hex[:12]
    faiss.write_index(to_cpu(index), str(folder / f"{name}-{build}.faiss"))
    table = pa.table({"path_bytes": pa.array([os.fsencode(p) for p in paths], pa.binary())})  # any file name
    with ipc.new_file(str(folder / f"{name}-{build}.paths.arrow"), table.schema) as writer:
        writer.write_table(table)
    meta = {
        "name": name,
        "build": build,
        "table_version": table_version,
        "built_at": time.time(),
        "params": asdict(params),
    }
    write_text(folder / f"{name}.json", json.dumps(meta, indent=2, sort_keys=True))
    for old in folder.glob(f"{name}-*"):  # earlier builds (and leftovers of killed ones)
        if build not in old.name:
            old.unlink(missing_ok=True)
    return meta


def remove_ann(index_dir: str | Path, name: str) -> None:
    """Forget an index (its table became empty): the JSON first, so no reader sees a half-removed one."""
    folder = _dir(Path(index_dir))
    (folder / f"{name}.json").unlink(missing_ok=True)
    for old in folder.glob(f"{name}-*"):
        old.unlink(missing_ok=True)


def load_ann(index_dir: str | Path, name: str, use_gpu: bool = True) -> LoadedAnn | None:
    """The current build of an index, or None when there is none or its files are incomplete."""
    meta = read_ann_meta(index_dir, name)
    if meta is None:
        return None
    folder = _dir(Path(index_dir))
    faiss_file = folder / f"{name}-{meta['build']}.faiss"
    paths_file = folder / f"{name}-{meta['build']}.paths.arrow"
    if not faiss_file.is_file() or not paths_file.is_file():
        log.warning("FAISS index %s is incomplete; searching exactly instead", name)
        return None
    index = faiss.read_index(str(faiss_file))
    with ipc.open_file(str(paths_file)) as reader:
        paths = [os.fsdecode(b) for b in reader.read_all().column("path_bytes").to_pylist()]
    params = AnnParams(**meta["params"])
    if params.kind != "flat":
        set_nprobe(index, params.nprobe)
    gpu_index = None
    if use_gpu and params.kind in ("flat", IVF_FLAT):
        moved, on_gpu = maybe_gpu(index)
        if on_gpu:
            gpu_index = moved
            if params.kind != "flat":
                set_nprobe(gpu_index, params.nprobe)
        elif params.kind == "flat" and (device := torch_gpu()) is not None:
            gpu_index = TorchExact.from_flat(index, device)  # FAISS has no GPU here, torch has one
    return LoadedAnn(name, index, params, paths, int(meta["table_version"]), gpu_index)
