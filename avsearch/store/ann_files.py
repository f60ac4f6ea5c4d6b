"""FAISS indexes on disk beside the tables: ann/<name>.json names the files of the current build.

A build writes `<name>-<build id>.faiss` and `<name>-<build id>.paths.arrow` first and then replaces
the JSON atomically, so a reader sees either the previous complete build or the new one. Row i of the
FAISS index is path i of the paths file. `table_version` records which table version it was built from;
a stale index (the table moved on after a killed run) is not used for search.

An index on an object store keeps the same objects under <uri>/ann/; a reader downloads a build once into
the local cache (settings.cache_dir/ann/<location key>/), under names that carry the build id and the
table version, so a re-opened index reads the cached copy and a new build is fetched anew.
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

from avsearch.store.ann import IVF_FLAT, AnnParams, configure, maybe_gpu, search_parameters, set_nprobe, to_cpu
from avsearch.store.location import Location
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
        return self.index.search(queries, k, params=search_parameters(self.params, sel=sel))


def _files(name: str, build: str) -> tuple[str, str]:
    """The FAISS file and the paths file of one build (names under ann/)."""
    return f"{name}-{build}.faiss", f"{name}-{build}.paths.arrow"


def cache_folder(location: Location) -> Path:
    """Where FAISS files of an object-store index are kept locally (one folder per location)."""
    from avsearch.settings import load_settings

    return load_settings().cache_dir / "ann" / location.cache_key()


def read_ann_meta(index_dir: str | Path | Location, name: str) -> dict[str, Any] | None:
    data = Location.of(index_dir).read_bytes(f"{ANN_DIR}/{name}.json")
    return None if data is None else json.loads(data.decode("utf-8"))


def save_ann(
    index_dir: str | Path | Location,
    name: str,
    index: faiss.Index,
    params: AnnParams,
    paths: list[str],
    table_version: int,
) -> dict[str, Any]:
    """Write index + paths under a fresh build id, then point ann/<name>.json at them; returns the JSON.

    On an object store the files are written into the local cache (where a reader in this process
    finds them) and uploaded from there."""
    location = Location.of(index_dir)
    build = uuid.uuid4().hex[:12]
    faiss_name, paths_name = _files(name, build)
    folder = Path(location.uri, ANN_DIR) if location.is_local else cache_folder(location)
    folder.mkdir(parents=True, exist_ok=True)
    if location.is_local:
        local_faiss, local_paths = folder / faiss_name, folder / paths_name
    else:
        local_faiss = folder / _cached(faiss_name, build, table_version)
        local_paths = folder / _cached(paths_name, build, table_version)
    faiss.write_index(to_cpu(index), str(local_faiss))
    table = pa.table({"path_bytes": pa.array([os.fsencode(p) for p in paths], pa.binary())})  # any file name
    with ipc.new_file(str(local_paths), table.schema) as writer:
        writer.write_table(table)
    if not location.is_local:
        location.upload(local_faiss, f"{ANN_DIR}/{faiss_name}")
        location.upload(local_paths, f"{ANN_DIR}/{paths_name}")
    meta = {
        "name": name,
        "build": build,
        "table_version": table_version,
        "built_at": time.time(),
        "params": asdict(params),
    }
    location.write_bytes(f"{ANN_DIR}/{name}.json", json.dumps(meta, indent=2, sort_keys=True).encode())
    for old, _ in location.list(ANN_DIR):  # earlier builds (and leftovers of killed ones)
        if old.startswith(f"{name}-") and build not in old:
            location.delete(f"{ANN_DIR}/{old}")
    if not location.is_local:
        _evict(folder, name, build)
    return meta


def remove_ann(index_dir: str | Path | Location, name: str) -> None:
    """Forget an index (its table became empty): the JSON first, so no reader sees a half-removed one."""
    location = Location.of(index_dir)
    location.delete(f"{ANN_DIR}/{name}.json")
    for old, _ in location.list(ANN_DIR):
        if old.startswith(f"{name}-"):
            location.delete(f"{ANN_DIR}/{old}")


def _cached(file_name: str, build: str, table_version: int) -> str:
    """A cached file's name: the stored name with the table version it was built from after the build id."""
    return file_name.replace(f"-{build}.", f"-{build}-v{table_version}.", 1)


def _evict(folder: Path, name: str, keep_build: str) -> None:
    """Drop cached files of other builds of `name` (they are never read again)."""
    for old in folder.glob(f"{name}-*"):
        if keep_build not in old.name:
            old.unlink(missing_ok=True)


def _local_files(location: Location, name: str, meta: dict[str, Any]) -> tuple[Path, Path] | None:
    """The build's two files on this machine: in the folder of a local index, else in the cache (fetched
    once per build and table version); None when the build's files are missing."""
    faiss_name, paths_name = _files(name, meta["build"])
    if location.is_local:
        folder = Path(location.uri, ANN_DIR)
        found = folder / faiss_name, folder / paths_name
        return found if all(f.is_file() for f in found) else None
    folder = cache_folder(location)
    version = int(meta["table_version"])
    wanted = []
    for remote in (faiss_name, paths_name):
        local = folder / _cached(remote, meta["build"], version)
        if not local.is_file():
            try:
                location.download(f"{ANN_DIR}/{remote}", local)
            except FileNotFoundError:
                return None
        wanted.append(local)
    _evict(folder, name, meta["build"])
    return wanted[0], wanted[1]


def load_ann(index_dir: str | Path | Location, name: str, use_gpu: bool = True) -> LoadedAnn | None:
    """The current build of an index, or None when there is none or its files are incomplete."""
    location = Location.of(index_dir)
    meta = read_ann_meta(location, name)
    if meta is None:
        return None
    found = _local_files(location, name, meta)
    if found is None:
        log.warning("FAISS index %s is incomplete; searching exactly instead", name)
        return None
    faiss_file, paths_file = found
    index = faiss.read_index(str(faiss_file))
    with ipc.open_file(str(paths_file)) as reader:
        paths = [os.fsdecode(b) for b in reader.read_all().column("path_bytes").to_pylist()]
    params = AnnParams(**meta["params"])
    configure(index, params)
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
