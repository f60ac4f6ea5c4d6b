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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from avsearch.lazy_import import lazy_module
from avsearch.store.ann import FLAT, IVF_FLAT, IVF_RABITQ_GUIDED, AnnParams, maybe_gpu, to_cpu
from avsearch.store.ann_disk import DiskRefine, VectorFile
from avsearch.store.ann_search import configure, search_parameters, set_nprobe
from avsearch.store.ann_table_vectors import TableVectors
from avsearch.store.location import Location
from avsearch.store.path_list import PathList
from avsearch.store.torch_search import TorchExact, torch_gpu

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)

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
    paths: Sequence[str]  # row i's name: a PathList when read from disk, a list when just built
    table_version: int
    gpu_index: faiss.Index | None = None  # copy on GPU when FAISS has GPUs

    @property
    def engine(self) -> str:
        """What answers unfiltered searches: "faiss-gpu", "torch-cuda" (exact, when FAISS cannot use the
        GPU) or "faiss-cpu"; filtered searches run on the CPU."""
        if self.gpu_index is None:
            return "faiss-cpu"
        return "torch-cuda" if isinstance(self.gpu_index, TorchExact) else "faiss-gpu"

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, cross_modal: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """queries (M, d) float32 -> (scores (M, k), row ids (M, k)); ids -1 where fewer than k.

        allowed: row ids a metadata filter kept (None = all rows). cross_modal: the queries are of another
        modality than the indexed one (text included); a guided index routes them by its shift. Queries of
        the indexed modality use the settings tuned for them (params.extra["same_modality"]), where the
        build recorded some.
        """
        queries = np.ascontiguousarray(queries, np.float32)
        k = max(1, min(k, len(self.paths)))
        own = None if cross_modal else self.params.extra.get("same_modality")
        if own and self.params.kind != FLAT and (allowed is not None or self.gpu_index is None):
            # (a GPU index answers unfiltered searches with the settings set on it)
            sel = None if allowed is None else faiss.IDSelectorBatch(np.ascontiguousarray(allowed, np.int64))
            nprobe, k_factor = int(own["nprobe"]), int(own["k_factor"]) or None  # type: ignore[index]
            return self.index_search(queries, k, search_parameters(self.params, sel, nprobe, k_factor), False)
        if allowed is None and self.gpu_index is not None:
            try:
                return self.gpu_index.search(queries, k)
            except Exception as exc:  # a GPU that fails (memory, driver) costs speed, never the answer
                log.warning("FAISS GPU search of %s failed, searching on the CPU from now on: %s", self.name, exc)
                self.gpu_index = None
        if allowed is None:
            return self.index_search(queries, k, None, cross_modal)
        sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, np.int64))
        return self.index_search(queries, k, search_parameters(self.params, sel=sel), cross_modal)

    def index_search(
        self, queries: np.ndarray, k: int, params: faiss.SearchParameters | None, cross_modal: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """The CPU index's search with these parameters; cross_modal reaches the indexes that route by it."""
        if isinstance(self.index, DiskRefine):
            return self.index.search(queries, k, params=params, cross_modal=cross_modal)
        return self.index.search(queries, k, params=params)


def _files(name: str, build: str) -> tuple[str, str]:
    """The FAISS file and the paths file of one build (names under ann/)."""
    return f"{name}-{build}.faiss", f"{name}-{build}.paths.arrow"


def _shift_file(name: str, build: str) -> str:
    """A guided build's route shift, a (d,) float32 .npy (ann_spill)."""
    return f"{name}-{build}.shift.npy"


def cache_folder(location: Location) -> Path:
    """Where FAISS files of an object-store index are kept locally (one folder per location)."""
    from avsearch.settings import load_settings

    return load_settings().cache_dir / "ann" / location.cache_key()


def read_ann_meta(index_dir: str | Path | Location, name: str) -> dict[str, Any] | None:
    data = Location.of(index_dir).read_bytes(f"{ANN_DIR}/{name}.json")
    return None if data is None else json.loads(data.decode("utf-8"))


def new_vectors_file(index_dir: str | Path | Location, name: str) -> Path:
    """A fresh path for the full vectors of a streamed build of `name` (ann_disk.VectorFile): under ann/
    for a local index, in the local cache for one on an object store (save_ann uploads it)."""
    location = Location.of(index_dir)
    folder = Path(location.uri, ANN_DIR) if location.is_local else cache_folder(location)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{uuid.uuid4().hex[:12]}{VECTORS_SUFFIX}"


VECTORS_SUFFIX = ".vectors.f32"


def save_ann(
    index_dir: str | Path | Location,
    name: str,
    index: faiss.Index | DiskRefine,
    params: AnnParams,
    paths: list[str],
    table_version: int,
) -> dict[str, Any]:
    """Write index + paths under a fresh build id, then point ann/<name>.json at them; returns the JSON.
    A DiskRefine index's vectors file (new_vectors_file, written by its build) is named in the JSON and
    kept while a build uses it (an incremental update appends to its predecessor's); a guided build's
    vectors (in RAM) are written to a new one, and its route shift to <name>-<build>.shift.npy.

    On an object store the files are written into the local cache (where a reader in this process
    finds them) and uploaded from there."""
    location = Location.of(index_dir)
    build = uuid.uuid4().hex[:12]
    faiss_name, paths_name = _files(name, build)
    table_vectors = index.vectors if isinstance(index, DiskRefine) and isinstance(index.vectors, TableVectors) else None
    if table_vectors is not None:
        vectors_name = None  # re-ranked from the table: nothing to copy
    elif isinstance(index, DiskRefine) and not isinstance(index.vectors, VectorFile):
        # a guided build holds its vectors in RAM: they go into a file of their own, named in the JSON
        written = new_vectors_file(location, name)
        np.ascontiguousarray(index.vectors, np.float32).tofile(written)
        vectors_name: str | None = written.name
    else:
        vectors_name = index.vectors.path.name if isinstance(index, DiskRefine) else None
    folder = Path(location.uri, ANN_DIR) if location.is_local else cache_folder(location)
    folder.mkdir(parents=True, exist_ok=True)
    if location.is_local:
        local_faiss, local_paths = folder / faiss_name, folder / paths_name
    else:
        local_faiss = folder / _cached(faiss_name, build, table_version)
        local_paths = folder / _cached(paths_name, build, table_version)
    faiss.write_index(index.base if isinstance(index, DiskRefine) else to_cpu(index), str(local_faiss))
    shift_name = None
    if getattr(index, "shift", None) is not None:  # a guided build's route for cross-modal queries
        shift_name = _shift_file(name, build)
        local_shift = folder / (shift_name if location.is_local else _cached(shift_name, build, table_version))
        with open(local_shift, "wb") as f:  # np.save to a path would add ".npy" to a name without it
            np.save(f, np.asarray(index.shift, np.float32), allow_pickle=False)
    arrays: dict[str, str] = {}  # re-ranked from the table: each id's fingerprint and (after an update) row
    if table_vectors is not None:
        found = {"hashes": table_vectors.hashes(), "positions": table_vectors.positions}
        for key, array in found.items():
            if array is not None:
                arrays[key] = f"{name}-{build}.{key}.npy"
                local = folder / (arrays[key] if location.is_local else _cached(arrays[key], build, table_version))
                with open(local, "wb") as f:
                    np.save(f, np.asarray(array), allow_pickle=False)
                if not location.is_local:
                    location.upload(local, f"{ANN_DIR}/{arrays[key]}")
    table = pa.table({"path_bytes": pa.array([os.fsencode(p) for p in paths], pa.binary())})  # any file name
    with ipc.new_file(str(local_paths), table.schema) as writer:
        writer.write_table(table)
    if not location.is_local:
        location.upload(local_faiss, f"{ANN_DIR}/{faiss_name}")
        location.upload(local_paths, f"{ANN_DIR}/{paths_name}")
        if vectors_name is not None:
            location.upload(folder / vectors_name, f"{ANN_DIR}/{vectors_name}")
        if shift_name is not None:
            location.upload(local_shift, f"{ANN_DIR}/{shift_name}")
    meta = {
        "name": name,
        "build": build,
        "table_version": table_version,
        "built_at": time.time(),
        "params": asdict(params),
    }
    if vectors_name is not None:
        meta["vectors"] = vectors_name
    if shift_name is not None:
        meta["shift"] = shift_name
    if table_vectors is not None:
        meta["table_vectors"] = {"version": table_vectors.version, "column": table_vectors.column}
        meta.update(arrays)
    location.write_bytes(f"{ANN_DIR}/{name}.json", json.dumps(meta, indent=2, sort_keys=True).encode())
    for old, _ in location.list(ANN_DIR):  # earlier builds (and leftovers of killed ones)
        if old.startswith(f"{name}-") and build not in old and old != vectors_name:
            location.delete(f"{ANN_DIR}/{old}")
    if not location.is_local:
        _evict(folder, name, build, vectors_name)
    return meta


def redate_ann(index_dir: str | Path | Location, name: str, table_version: int) -> None:
    """Record that the current build of `name` is that of table version `table_version` too: for a
    commit that changed no row, path or vector (columns added: store/index.py add_missing_columns)."""
    location = Location.of(index_dir)
    meta = read_ann_meta(location, name)
    if meta is not None:
        meta["table_version"] = table_version
        location.write_bytes(f"{ANN_DIR}/{name}.json", json.dumps(meta, indent=2, sort_keys=True).encode())


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


def _evict(folder: Path, name: str, keep_build: str, keep_vectors: str | None) -> None:
    """Drop cached files of other builds of `name` (they are never read again)."""
    for old in folder.glob(f"{name}-*"):
        if keep_build not in old.name and old.name != keep_vectors:
            old.unlink(missing_ok=True)


def _local_files(location: Location, name: str, meta: dict[str, Any]) -> dict[str, Path] | None:
    """The build's files on this machine: "faiss", "paths", and where the JSON names them "vectors" (the full
    vectors of a DiskRefine build), "shift" (a guided build's route shift), "hashes" and "positions" (of a
    build re-ranked from the table); in the folder of a local
    index, else in the cache (fetched once per build and table version; the vectors file once per name);
    None when one of the build's files is missing."""
    faiss_name, paths_name = _files(name, meta["build"])
    named = {"faiss": faiss_name, "paths": paths_name}
    named.update({key: meta[key] for key in ("vectors", "shift", "hashes", "positions") if meta.get(key)})
    vectors_name = named.get("vectors")
    if location.is_local:
        folder = Path(location.uri, ANN_DIR)
        found = {key: folder / file for key, file in named.items()}
        return found if all(f.is_file() for f in found.values()) else None
    folder = cache_folder(location)
    version = int(meta["table_version"])
    wanted = {}
    for key, remote in named.items():
        local = folder / (remote if key == "vectors" else _cached(remote, meta["build"], version))
        if not local.is_file() or (key == "vectors" and not _same_size(location, remote, local)):
            try:
                location.download(f"{ANN_DIR}/{remote}", local)
            except FileNotFoundError:
                return None
        wanted[key] = local
    _evict(folder, name, meta["build"], vectors_name)
    return wanted


def _same_size(location: Location, remote: str, local: Path) -> bool:
    """Whether a cached vectors file is as long as the stored one (an incremental update appends to it)."""
    sizes = dict(location.list(ANN_DIR))
    return sizes.get(remote) == local.stat().st_size


def _guided(
    base: faiss.Index,
    params: AnnParams,
    on_disk: VectorFile | TableVectors | None,
    shift_file: Path | None,
    memory_budget_gb: float | None,
    rows: int,
) -> Any:
    """A guided build's SpillRefine: its codes, full vectors (in RAM when they fit the budget) and route
    shift; None when its vectors file is missing or does not hold `rows` rows (one per path, rows removed
    by an in-place update included)."""
    from avsearch.store.ann_spill import SpillRefine

    if on_disk is None or on_disk.rows != rows:
        return None
    if memory_budget_gb is None:
        from avsearch.store.config import load_search_config

        memory_budget_gb = load_search_config().ann.memory_budget_gb
    # a streamed build's vectors stayed on disk because they did not fit: they are read by row again
    fits = not params.vectors_on_disk and rows * params.dim * 4 <= memory_budget_gb * 1024**3
    in_file = isinstance(on_disk, VectorFile)
    vectors = np.fromfile(on_disk.path, np.float32).reshape(rows, params.dim) if fits and in_file else on_disk
    shift = None if shift_file is None else np.load(shift_file, allow_pickle=False)
    return SpillRefine(base, vectors, shift=shift)


def load_ann(
    index_dir: str | Path | Location,
    name: str,
    use_gpu: bool = True,
    memory_budget_gb: float | None = None,
    open_table: Callable[[int], Any] | None = None,
) -> LoadedAnn | None:
    """The current build of an index, or None when there is none or its files are incomplete.

    A guided build's vectors are read into RAM while they fit memory_budget_gb (None: [ann] of
    search.toml), else re-ranked from their file by row, as a streamed build's are. open_table(version):
    the Lance dataset of the index's table at a version, for a build re-ranked from the table (without it
    such a build is not loaded)."""
    location = Location.of(index_dir)
    meta = read_ann_meta(location, name)
    if meta is None:
        return None
    found = _local_files(location, name, meta)
    if found is None:
        log.warning("FAISS index %s is incomplete; searching exactly instead", name)
        return None
    faiss_file, paths_file, vectors_file = found["faiss"], found["paths"], found.get("vectors")
    index = faiss.read_index(str(faiss_file))
    with ipc.open_file(str(paths_file)) as reader:
        paths = PathList(reader.read_all().column("path_bytes"))  # decoded on access (path_list.py)
    params = AnnParams(**meta["params"])
    disk: VectorFile | TableVectors | None = None if vectors_file is None else VectorFile(vectors_file, params.dim)
    if meta.get("table_vectors"):
        if open_table is None:
            log.warning("FAISS index %s re-ranks from its table, which was not given; searching exactly", name)
            return None
        at, positions = int(meta["table_vectors"]["version"]), found.get("positions")
        disk = TableVectors(
            lambda: open_table(at),
            at,
            meta["table_vectors"]["column"],
            params.dim,
            len(paths),
            None if positions is None else np.load(positions, mmap_mode="r", allow_pickle=False),
            hashes_file=found["hashes"],
        )
    if params.kind == IVF_RABITQ_GUIDED:
        index = _guided(index, params, disk, found.get("shift"), memory_budget_gb, len(paths))
        if index is None:
            log.warning("FAISS index %s: its vectors file is missing or incomplete; searching exactly instead", name)
            return None
    elif disk is not None:
        index = DiskRefine(index, disk)
    configure(index, params)
    gpu_index = None
    if use_gpu and params.kind in ("flat", IVF_FLAT) and disk is None:
        moved, on_gpu = maybe_gpu(index)
        if on_gpu:
            gpu_index = moved
            if params.kind != "flat":
                set_nprobe(gpu_index, params.nprobe)
        elif params.kind == "flat" and (device := torch_gpu()) is not None:
            gpu_index = TorchExact.from_flat(index, device)  # FAISS has no GPU here, torch has one
    return LoadedAnn(name, index, params, paths, int(meta["table_version"]), gpu_index)
