"""`avsearch index FOLDER --ray ADDRESS`: the run of pipeline.py, with the embedding on a Ray cluster.

This process (the driver) walks, plans, reuses, deletes, records failures and refreshes the FAISS
indexes exactly as a local run does (pipeline.index_folder); only the files to embed go to Ray. They go,
one block per batch, to a pool of plain Ray actors (ray_embed.py: one per GPU of the cluster, else one per
4 CPUs) that load the encoders and bridges once, embed a batch, build its rows in the table's schema and
write them as a Lance fragment next to the table (lance_ray.LanceFragmentWriter). The driver commits
each batch's fragment as one Lance append, in batch order, so a killed run keeps every committed batch,
as a local run does, and the next run (local or Ray) plans from the tables. An append cannot replace a
row, so each batch deletes its changed files' old rows just before it commits (a local run replaces them
in one commit): a run killed in between re-embeds those files next time.

Not Ray Data: its actor pools restart a dead actor and retry its batch without end (a batch that kills its
worker would loop), log an error line per actor about those restarts (ray issue 53727; the knob that turns
them off, map_batches(max_restarts=...), is deprecated in Ray 2.60), and take their settings from the
process-wide DataContext. A handful of actors fed blocks of paths in order needs none of that: a worker
that dies stops the run with Ray's error, and the next run embeds what was not committed.

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
from avsearch.store.table_schema import TABLES_DIR

log = logging.getLogger(__name__)

INSTALL_HINT = "--ray needs Ray and lance-ray: pip install avsearch[ray]"
LOCAL = "local"  # --ray local: start a Ray instance on this machine for the run (stopped after it)
CPUS_PER_ACTOR = 4  # on CPU-only nodes: threads per embedding actor (fewer where a node has fewer)
ACTOR_START_S = 600  # how long the embedding actors may take to start (a node may be busy or still joining)
IN_FLIGHT = 2  # batches queued on each actor: it starts the next as soon as it is done with one


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
    with ray_connection(address), _driver_print_kept():
        embedder = RayEmbedder(actors)
        summary = index_folder(root, index_dir, embed=embedder, **options)
    summary.ray_nodes = dict(embedder.nodes)
    return summary


@contextlib.contextmanager
def _driver_print_kept() -> Iterator[None]:
    """The driver's builtins.print as it was before the run: Ray's progress-bar manager (ray.experimental.
    tqdm_ray) replaces it process-wide when a worker's bar reaches the driver, and never puts it back."""
    import builtins

    kept = builtins.print
    try:
        yield
    finally:
        builtins.print = kept


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
        from avsearch.indexing.ray_embed import batch_blocks

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
        models = index.models
        setup = {
            "manifest": index.manifest,
            "index_dir": str(index.path),
            "loader": models.loader,
            "device": models.device,
            "weights_dir": str(models.weights_dir) if models.weights_dir else None,
            "describe": describe,
            "tables": layouts,
        }
        written: set[str] = set()  # a video counts once, though it has rows in two tables
        with _surfaced(), _workers(setup, actors, resources) as workers:
            for out in _embedded(workers, blocks):
                for row in out.to_pylist():
                    self._commit(index, row, layouts[row["table"]], stale[row["table"]], failed, progress)
                    written.update(map(os.fsdecode, row["embedded"]))
        for table in sorted(groups):
            progress.finish(f"embed {table}")
        return len(written)

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
        listed = {p for p, _ in failed}  # a bad video fails in both its tables: listed once, as a local run
        for p, why in zip(map(os.fsdecode, row["failed"]), row["reasons"], strict=True):
            if p not in listed:
                failed.append((p, why))
                listed.add(p)
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


class EmbedWorker:
    """The Ray actor: ray_embed.EmbedActor, made from the run's setup (one object for all the actors)."""

    def __init__(self, setup: dict[str, Any]) -> None:
        from avsearch.indexing.ray_embed import EmbedActor

        self.error: AvsearchError | None = None
        try:
            self.actor = EmbedActor(**setup)
        except AvsearchError as exc:  # kept for the calls: an error of a call reaches the driver as itself
            self.error = exc

    def node(self) -> str:
        """The Ray node it runs on; answered once the actor is made, so it also says "ready"."""
        if self.error:
            raise self.error
        return self.actor.node

    def embed(self, block: pa.Table) -> pa.Table:
        if self.error:
            raise self.error
        return self.actor(block)


@contextlib.contextmanager
def _workers(setup: dict[str, Any], actors: int, resources: dict[str, float]) -> Iterator[list[Any]]:
    """`actors` EmbedWorkers, spread over the nodes, all started (within ACTOR_START_S: a cluster that
    cannot host the pool says so instead of waiting forever); stopped after the block."""
    import ray

    shared = ray.put(setup)  # serialised once, not once per actor
    make = ray.remote(EmbedWorker).options(scheduling_strategy="SPREAD", **resources)
    workers = [make.remote(shared) for _ in range(actors)]
    try:
        started = [w.node.remote() for w in workers]
        _, late = ray.wait(started, num_returns=len(started), timeout=ACTOR_START_S)
        if late:
            raise ConfigError(
                f"the Ray cluster started {len(started) - len(late)} of {actors} embedding actors "
                f"({', '.join(f'{k}={v:g}' for k, v in resources.items())} each) in {ACTOR_START_S} s"
            )
        ray.get(started)  # an actor that could not be made says why
        yield workers
    finally:
        for w in workers:
            ray.kill(w)  # now, so the next backend's actors get the resources


def _embedded(workers: list[Any], blocks: list[pa.Table]) -> Iterator[pa.Table]:
    """Each block embedded on the least busy worker (up to IN_FLIGHT queued on each); the results in block
    order, each as soon as the blocks before it are done."""
    import ray

    busy = [0] * len(workers)
    running: dict[Any, tuple[int, int]] = {}  # result ref -> (block, worker)
    done: dict[int, pa.Table] = {}
    queued = iter(range(len(blocks)))
    following = 0
    while following < len(blocks):
        while min(busy) < IN_FLIGHT and (i := next(queued, None)) is not None:
            w = busy.index(min(busy))
            running[workers[w].embed.remote(blocks[i])] = (i, w)
            busy[w] += 1
        ready, _ = ray.wait(list(running), num_returns=1)
        i, w = running.pop(ready[0])
        busy[w] -= 1
        done[i] = ray.get(ready[0])
        while following in done:
            yield done.pop(following)
            following += 1


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


@contextlib.contextmanager
def _surfaced() -> Iterator[None]:
    """Ray's error for a failed actor call, with an avsearch error inside (missing weights on a node, another
    index's encoder) raised as that error, so the CLI names it in one line; anything else (a bug, a worker
    that died) surfaces as it is, with the worker's traceback."""
    try:
        yield
    except Exception as exc:
        seen: BaseException | None = exc
        while seen is not None:
            inner = getattr(seen, "cause", None)  # a RayTaskError holds the worker's exception here
            if isinstance(seen, AvsearchError) and inner is None:
                if seen is exc:
                    raise  # the driver's own
                raise type(seen)(str(seen)) from exc
            seen = inner if isinstance(inner, BaseException) else seen.__cause__
        raise
