"""`avsearch index FOLDER --ray ADDRESS`: the run of pipeline.py, with the embedding on a Ray cluster.

This process (the driver) walks, plans, reuses, deletes, records failures and refreshes the FAISS
indexes exactly as a local run does (pipeline.index_folder); only the files to embed go to Ray. Ray Data
streams them, one block per batch, to a pool of actors (ray_embed.py: one per GPU of the cluster, else one
per 4 CPUs) that load the encoders and bridges once, embed a batch, build its rows in the table's schema
and write them as a Lance fragment next to the table (lance_ray.LanceFragmentWriter). The driver commits
each batch's fragment as one Lance append, in batch order, so a killed run keeps every committed batch,
as a local run does, and the next run (local or Ray) plans from the tables. An append cannot replace a
row, so each batch deletes its changed files' old rows just before it commits (a local run replaces them
in one commit): a run killed in between re-embeds those files next time.

Every node reads the media, weights and bridge files and writes the index folder at the same paths
(one machine, or a shared filesystem); the index folder is local (s3:// is refused).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from avsearch.errors import AvsearchError, ConfigError, InputError
from avsearch.indexing.pipeline import IndexSummary, index_folder
from avsearch.indexing.plan import Item
from avsearch.indexing.progress import Progress
from avsearch.store.index import Index
from avsearch.store.tables import TABLES_DIR

log = logging.getLogger(__name__)

INSTALL_HINT = "--ray needs Ray and lance-ray: pip install avsearch[ray]"
LOCAL = "local"  # --ray local: start a Ray instance on this machine for the run (stopped after it)
RAY_ADVICE = "\nFailed to apply UDF transform"  # what Ray Data adds to a worker's error message
CPUS_PER_ACTOR = 4  # on CPU-only nodes: threads per embedding actor (fewer where a node has fewer)
ACTOR_START_S = 600  # how long the embedding actors may take to start (a node may be busy or still joining)


def index_folder_ray(
    root: str | Path,
    index_dir: str | Path,
    address: str,
    actors: int | None = None,
    **options: Any,
) -> IndexSummary:
    """`avsearch index ROOT --ray ADDRESS`: index_folder (same plan, tables, resume and failures) with the
    files to embed embedded on Ray. address: "auto" (the running cluster: RAY_ADDRESS or this machine's),
    "host:port" or "ray://host:port" of a cluster, or "local" (a Ray instance started for this run and
    stopped after it). actors: embedding actors (default: one per GPU of the cluster, else one per 4 CPUs, or per node
    where nodes have fewer).
    options: index_folder's (bridges, weights_dir, device, batch_size, encoder_loader, ...); an
    encoder_loader must be importable on the workers."""
    if "://" in str(index_dir) and not str(index_dir).startswith("file://"):
        raise InputError(f"{index_dir}: --ray writes to an index folder on a local or shared filesystem, not a URL")
    if actors is not None and actors < 1:
        raise ConfigError(f"--ray needs at least 1 actor, got {actors}")
    with ray_connection(address):
        embedder = RayEmbedder(actors)
        summary = index_folder(root, index_dir, embed=embedder, **options)
    summary.ray_nodes = dict(embedder.nodes)
    return summary


@contextlib.contextmanager
def ray_connection(address: str) -> Iterator[None]:
    """Connected to a Ray cluster (started here for "local") for the block; a connection this process
    already has is used as it is."""
    try:
        import lance_ray  # noqa: F401  (checked now: the workers need it too)
        import ray
    except ImportError as exc:
        raise ConfigError(INSTALL_HINT) from exc
    if ray.is_initialized():  # a caller's own connection (a notebook, a test): used as it is
        yield
        return
    try:
        with warnings.catch_warnings():
            # Ray starts its processes with fork + exec: nothing of lance's runtime is used in the child
            warnings.filterwarnings("ignore", message=".*(lance|lancedb).*fork")
            if address == LOCAL:
                ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:  # none there, another Ray version, a bad address
        raise InputError(f"--ray {address}: cannot connect ({str(exc).strip().splitlines()[0]})") from exc
    try:
        yield
    finally:
        ray.shutdown()  # disconnects; stops the cluster only when it was started here


@dataclass
class _Table:
    """What the actors need to know of one table: where it is and its exact layout."""

    uri: str
    schema: pa.Schema
    storage_version: str
    with_meta: bool  # a table made before metadata columns keeps its own layout


@dataclass
class RayEmbedder:
    """pipeline.Embedder on Ray: embeds one backend's files on actors, commits their fragments here."""

    actors: int | None = None
    nodes: Counter[str] = field(default_factory=Counter)  # Ray node id -> files embedded there
    cpu_s: float = 0.0  # the actors' CPU time on batches, models loaded (benchmarks/ray_ingest.py: cost per file)
    files: int = 0  # files sent to the actors (embedded or failed)

    def __call__(
        self,
        index: Index,
        tables: dict[str, str],
        items: Sequence[Item],
        batch: int,
        failed: list[tuple[str, str]],
        progress: Progress,
        describe: Any,
    ) -> int:
        if not items:
            return 0
        import ray

        from avsearch.indexing.ray_embed import EmbedActor, batch_blocks

        groups: dict[str, list[Item]] = defaultdict(list)
        for it in items:
            groups[tables[it.modality]].append(it)
        layouts = {table: _layout(index, table) for table in groups}
        # Changed files have rows: an append cannot replace them, so each batch deletes its files' old rows
        # just before it commits (a local run's upsert replaces them in one commit).
        stale = {
            table: set(index.tables.lookup(table, [it.file.path for it in group])) for table, group in groups.items()
        }
        for table, group in sorted(groups.items()):
            progress.start(f"embed {table}", len(group))
        # Local runs embed the tables in sorted order, in batches of `batch`: the same here, in that order.
        blocks = [b for table, group in sorted(groups.items()) for b in batch_blocks(table, group, batch)]
        actors, resources = _pool(self.actors, len(blocks))
        log.info("embedding %d files in %d batches on %d Ray actors", len(items), len(blocks), actors)
        # Ray Data's notes (execution plans, progress bars off) would cut the CLI's bars; its errors still show.
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # commits in batch order, as a local run writes
        context.enable_progress_bars = False  # the CLI draws its own
        context.raise_original_map_exception = True  # a worker's error as itself (ours: typed), not wrapped
        # Start every actor before the first batch, so the work spreads over all of them; a cluster that
        # cannot host the pool says so instead of waiting forever.
        context.wait_for_min_actors_s = ACTOR_START_S
        models = index.models
        results = ray.data.from_arrow(blocks).map_batches(
            EmbedActor,
            fn_constructor_kwargs={
                "manifest": index.manifest,
                "index_dir": str(index.path),
                "loader": models.loader,
                "device": models.device,
                "weights_dir": str(models.weights_dir) if models.weights_dir else None,
                "describe": describe,
                "tables": layouts,
            },
            batch_size=None,  # a block is one batch
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            **resources,
        )
        written = 0
        for out in _surfaced(results.iter_batches(batch_size=None, batch_format="pyarrow")):
            for row in out.to_pylist():
                written += self._commit(index, row, layouts[row["table"]], stale[row["table"]], failed, progress)
        for table in sorted(groups):
            progress.finish(f"embed {table}")
        return written

    def _commit(
        self,
        index: Index,
        row: dict[str, Any],
        layout: _Table,
        stale: set[str],
        failed: list[tuple[str, str]],
        progress: Progress,
    ) -> int:
        """One embedded batch: its failures listed, its files' old rows deleted (also of a file that changed
        into something undecodable: those vectors no longer describe it), its fragment appended."""
        import lance

        table = row["table"]
        failed.extend((os.fsdecode(p), why) for p, why in zip(row["failed"], row["reasons"], strict=True))
        old = [p for p in map(os.fsdecode, row["paths"]) if p in stale]
        if old:
            index.tables.delete(table, old)
        if row["fragments"]:
            # The encoder's weights are recorded (and checked: every node must load the same) before any
            # row it made is committed, as a local run records them before its first write.
            name = index.manifest.modalities[table].encoder
            index.manifest.check_encoder(name, row["encoder"], str(index.path))
            if index.manifest.record_encoder(name, row["encoder"]):
                index.commit()
            fragments = [pickle.loads(f) for f in row["fragments"]]
            index.check_lock()
            version = lance.dataset(layout.uri).version
            lance.LanceDataset.commit(layout.uri, lance.LanceOperation.Append(fragments), read_version=version)
        self.nodes[row["node"]] += row["written"]
        self.cpu_s += row["cpu_seconds"]
        self.files += row["files"]
        progress.advance(f"embed {table}", row["files"])
        return int(row["written"])


def _layout(index: Index, table: str) -> _Table:
    import lance

    if not isinstance(index.path, Path):  # an index on an object store: the workers would need its credentials
        raise InputError(f"{index.path}: --ray writes to an index folder on a local or shared filesystem")
    uri = str(index.path / TABLES_DIR / f"{table}.lance")
    dataset = lance.dataset(uri)
    return _Table(uri, dataset.schema, dataset.data_storage_version, "tags" in dataset.schema.names)


def _pool(wanted: int | None, batches: int) -> tuple[int, dict[str, float]]:
    """How many actors and what each holds: one GPU each when the cluster has GPUs; else up to
    CPUS_PER_ACTOR CPUs each (torch's threads; every actor holds its own models, so one per core would
    multiply the memory for little speed). Never more actors than batches."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    gpus = sum(int(r.get("GPU", 0)) for r in nodes)
    if gpus:
        return max(1, min(wanted or gpus, gpus, batches)), {"num_gpus": 1}
    cpus = [int(r.get("CPU", 0)) for r in nodes if r.get("CPU", 0) >= 1]
    if not cpus:
        raise ConfigError("the Ray cluster has no CPU or GPU for the embedding actors")
    each = max(1, min(CPUS_PER_ACTOR, min(cpus)))
    slots = sum(c // each for c in cpus)
    return max(1, min(wanted or slots, slots, batches)), {"num_cpus": each}


def _surfaced(batches: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """Ray's error for a failed actor, with an avsearch error inside (missing weights on a node, another
    index's encoder) raised as that error, so the CLI names it in one line; anything else (a bug) surfaces
    as it is, with the worker's traceback."""
    try:
        yield from batches
    except Exception as exc:
        seen: BaseException | None = exc
        while seen is not None:
            inner = getattr(seen, "cause", None)  # a RayTaskError holds the worker's exception here
            if isinstance(seen, AvsearchError) and inner is None:
                # Ray Data appends its retry advice to the message: the user's line is ours alone
                raise type(seen)(str(seen).split(RAY_ADVICE, 1)[0]) from exc
            seen = inner if isinstance(inner, BaseException) else seen.__cause__
        raise
