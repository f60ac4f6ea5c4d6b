"""`avsearch index`: scan, diff, embed in committed batches, sweep deletions, refresh FAISS indexes.

Every batch is one LanceDB commit, so a run stopped anywhere (Ctrl-C, kill -9) leaves each table at a
committed version, and the next run only does what is left. Rows are written before old paths are
deleted, so an interruption can leave a stale row for a moment but never lose a file's vectors.

Each row also gets its filterable metadata (media/metadata.py): folder and extension from the path,
duration, sample rate, picture size or point count from the file's header, and tags from the run's
sidecar. The sidecar is the truth for the files under the run's root: an unchanged file whose tags (or
folder relative to the root) differ from its row is re-stamped without re-embedding. Tables made before
the metadata columns get them, filled the same way, also without re-embedding (metadata_pass.py).

An index may hold several search backends (C-MCR, CAV-MAE), each with its own tables: the folder is
walked once, and each backend's tables are diffed and brought up to date on their own (detection and
content hashes are computed once per file for all of them). A backend added to an existing index thus
embeds every file it lacks, and only those.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsearch.embedding.models import EncoderLoader
from avsearch.embedding.stream import plan_decode
from avsearch.errors import ConfigError, InputError
from avsearch.indexing.hashing import content_hash
from avsearch.indexing.metadata_pass import add_metadata_columns
from avsearch.indexing.moments import encode_moments
from avsearch.indexing.plan import Item, Plan, files, make_plan, under
from avsearch.indexing.progress import NoProgress, Progress
from avsearch.indexing.refresh import refresh_indexes
from avsearch.indexing.rows import Describer, embedded_rows, file_record, stored_info
from avsearch.media.detect import detect
from avsearch.media.metadata import (
    find_sidecar,
)
from avsearch.media.walk import ScannedFile, walk_folder
from avsearch.store.config import IngestConfig, SearchConfig, load_search_config
from avsearch.store.index import Index
from avsearch.store.index_info import FailedFile
from avsearch.store.index_setup import BridgeFiles
from avsearch.store.table_schema import MOMENT_FIELDS, FileRecord

log = logging.getLogger(__name__)


@dataclass
class IndexSummary:
    """What one run did. failed: (path, reason) for every file that could not be indexed."""

    root: str
    index_dir: str
    scanned: int = 0
    added: int = 0
    unchanged: int = 0
    touched: int = 0
    renamed: int = 0
    copied: int = 0
    retagged: int = 0  # unchanged files whose tags or folder changed (metadata rewritten, no re-embedding)
    metadata_added: dict[str, int] = field(default_factory=dict)  # table -> rows given the metadata columns
    removed: int = 0
    ignored: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    failed_before: int = 0  # of those, files that failed on an earlier run and have not changed (not re-read)
    counts: dict[str, int] = field(default_factory=dict)  # rows per modality after the run
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)  # FAISS name -> parameters
    embedded: dict[str, int] = field(default_factory=dict)  # backend -> files embedded by it in this run
    ray_nodes: dict[str, int] = field(default_factory=dict)  # a --ray run: Ray node id -> files embedded there
    seconds: float = 0.0


def index_folder(
    root: str | Path,
    index_dir: str | Path,
    bridges: BridgeFiles = None,
    weights_dir: str | Path | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    config: SearchConfig | None = None,
    encoder_loader: EncoderLoader | None = None,
    retry_failed: bool = False,
    rebuild: bool = False,
    tags: str | Path | None = None,
    backend: str | None = None,
    embed: Embedder | None = None,
) -> IndexSummary:
    """`avsearch index ROOT`: open (or create) the index at `index_dir` and bring it up to date with ROOT
    (the folder's files that are new, changed, renamed or gone).

    bridges: bridge files for a new index (default: configs/search.toml [index] default_bridges, the
    released ones); an existing index uses its own and refuses others. Files that failed before and have
    not changed since are listed again without being decoded, unless `retry_failed`. `rebuild` embeds
    everything anew (a damaged index: deleted table files), with the index's own bridges. `tags`: a tags
    sidecar (CSV or JSON lines keyed by path relative to ROOT); without it the configured sidecar name at
    ROOT is read when present (configs/metadata.toml [tags]). `backend`: "cmcr", "cavmae" or "both", the
    backends to add to the index (None: the index's own; a new index: configs/backends.toml's default);
    every backend the index holds is brought up to date. `embed`: how the files to embed are embedded and
    written (default: here, in committed batches; avsearch.indexing.distributed: on a Ray cluster).
    """
    cfg = config or load_search_config()
    root = _media_folder(root)  # checked before an index folder is made for it
    with Index.update(
        index_dir,
        bridges=bridges,
        weights_dir=weights_dir,
        device=device,
        encoder_loader=encoder_loader,
        rebuild=rebuild,
        backend=backend,
    ) as index:
        return update_index(root, index, batch_size, progress, cfg, retry_failed, tags, embed)


# (index, tables of one backend (modality -> table), items to embed, batch size, the run's failures to extend,
# progress, metadata of a path) -> files written. Writes each file's rows in the table, or lists it as failed.
Embedder = Callable[[Index, dict[str, str], Sequence[Item], int, list[tuple[str, str]], Progress, Describer], int]


def update_index(
    root: str | Path,
    index: Index,
    batch_size: int | None = None,
    progress: Progress | None = None,
    config: SearchConfig | None = None,
    retry_failed: bool = False,
    tags: str | Path | None = None,
    embed: Embedder | None = None,
) -> IndexSummary:
    """Index (or update the index of) the media under `root` into `index` (opened with Index.update).

    tags: the tags sidecar (default: the configured name at root, when present). embed: see index_folder."""
    started = time.perf_counter()
    cfg = config or load_search_config()
    progress = progress or NoProgress()
    root = _media_folder(root)
    describe = Describer(root, find_sidecar(root, tags))
    embed = embed or functools.partial(_embed_all, ingest=cfg.ingest)
    batch = batch_size or cfg.ingest.batch_size
    if batch < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch}")
    index.add_root(root)
    index.commit()

    # 1. What changed: walk the folder and compare it with the tables' bookkeeping.
    progress.start("scan", None)
    scanned, problems = walk_folder(
        root,
        cfg.ingest.follow_symlinks,
        cfg.ingest.skip_hidden,
        exclude=index.local_dir,  # None for an index on an object store
        on_file=lambda n: progress.advance("scan", n),
    )
    progress.finish("scan")
    remembered = index.failed_files()
    known_bad = [] if retry_failed else [f for f in scanned if _still_failing(f, remembered.get(f.path))]
    skip = {f.path for f in known_bad}
    todo = [f for f in scanned if f.path not in skip]
    summary = IndexSummary(str(root), str(index.path), scanned=len(scanned), failed_before=len(known_bad))
    summary.failed += problems + [(f.path, remembered[f.path].reason) for f in known_bad]
    # Tables made before the metadata columns get them first, from the files' headers (no encoder).
    summary.metadata_added = add_metadata_columns(index, root, describe, progress)
    # ... and the moment columns (null: their rows are whole files), so videos join them without --rebuild
    for table in index.manifest.modalities:
        if table in index.tables.modalities() and not index.tables.has_moments(table):
            index.add_missing_columns(table, MOMENT_FIELDS)
    # 2. Per backend: diff its tables, reuse stored vectors where the content is known, embed the rest,
    # then delete. The first backend's plan gives the run's counts.
    detect_once, hash_once = functools.cache(detect), functools.cache(content_hash)
    manifest = index.manifest
    takes = {m for b in manifest.backends() for m in manifest.tables_of(b)}  # modalities some backend takes
    changed = False
    for number, backend in enumerate(manifest.backends()):
        tables = manifest.tables_of(backend)
        stored = {m: index.tables.bookkeeping(t) for m, t in tables.items()}
        plan = make_plan(str(root), todo, stored, detect_once, hash_once, tables, progress)
        retag = _retag(todo, stored, describe)
        if number == 0:
            summary.unchanged, summary.touched, summary.renamed = plan.unchanged, files(plan.touched), plan.renamed
            summary.copied, summary.ignored = files(plan.reuse) - plan.renamed, len(plan.ignored)
            summary.retagged = len(retag)
        excused = {p for p, _ in plan.failed if _taken_elsewhere(detect_once(p), tables, takes)}
        _add_failures(summary.failed, plan.failed, excused)
        _reuse(index, tables, plan.touched + retag, describe, own=True)
        _reuse(index, tables, plan.reuse, describe, own=False)
        summary.embedded[backend] = embed(index, tables, plan.embed, batch, summary.failed, progress, describe)
        removed = _delete(index, tables, plan)
        if number == 0:
            summary.added, summary.removed = summary.embedded[backend], removed
        changed = changed or bool(plan.touched or plan.reuse or plan.embed or plan.delete or retag)
    _remember_failures(index, root, scanned, summary.failed, remembered)

    # 3. Compacted tables and FAISS indexes over their new versions.
    return finish_run(index, summary, cfg, progress, changed, started)


def finish_run(
    index: Index, summary: IndexSummary, cfg: SearchConfig, progress: Progress, changed: bool, started: float
) -> IndexSummary:
    """The end of every index run: compact changed tables, bring the FAISS indexes up to date, record
    them in the manifest, count the rows."""
    if changed:
        for modality in index.manifest.modalities:
            index.tables.compact(modality)
    summary.indexes = refresh_indexes(index, cfg.ann, progress)
    index.manifest.ann = {name: meta["params"] for name, meta in summary.indexes.items()}
    index.commit()
    summary.counts = {m: index.tables.count(m) for m in index.manifest.modalities}
    summary.seconds = time.perf_counter() - started
    return summary


def _retag(scanned: Sequence[ScannedFile], stored: dict[str, dict[str, FileRecord]], describe: Describer) -> list[Item]:
    """Unchanged files (same size and mtime as their row) whose tags or folder differ from the row's."""
    out = []
    for modality, rows in stored.items():
        for f in scanned:
            old = rows.get(f.path)
            if old is not None and (old.size, old.mtime_ns) == (f.size, f.mtime_ns) and describe.stale(old):
                out.append(Item(modality, f, old.hash))
    return out


def _taken_elsewhere(found: Any, tables: dict[str, str], takes: set[str]) -> bool:
    """Whether a file is media of a kind this backend does not take but another of the index does (a 3D
    shape for CAV-MAE beside C-MCR): not a failure of the run."""
    return not found.failed and found.kind is not None and found.kind not in tables and found.kind in takes


def _add_failures(failed: list[tuple[str, str]], new: Sequence[tuple[str, str]], excused: set[str]) -> None:
    """Add a backend's failures: each file once over all backends, none for a file another one takes."""
    seen = {p for p, _ in failed}
    for path, why in new:
        if path not in seen and path not in excused:
            failed.append((path, why))
            seen.add(path)


def _still_failing(f: ScannedFile, failed: FailedFile | None) -> bool:
    return failed is not None and (failed.size, failed.mtime_ns) == (f.size, f.mtime_ns)


def _remember_failures(
    index: Index,
    root: Path,
    scanned: Sequence[ScannedFile],
    failed: Sequence[tuple[str, str]],
    remembered: dict[str, FailedFile],
) -> None:
    """Record this run's failed files under `root` (others' entries kept; fixed or gone files dropped)."""
    files = {f.path: f for f in scanned}
    keep = {p: f for p, f in remembered.items() if not under(p, str(root))}
    keep |= {p: FailedFile(files[p].size, files[p].mtime_ns, why) for p, why in failed if p in files}
    if keep != remembered:
        index.record_failed(keep)


def _media_folder(root: str | Path) -> Path:
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    return root


def _delete(index: Index, tables: dict[str, str], plan: Plan) -> int:
    """Remove the rows of files that are gone (tables: modality -> table of the plan's backend); returns
    how many files left the index."""
    by_modality: dict[str, list[str]] = defaultdict(list)
    for modality, path in plan.delete:
        by_modality[modality].append(path)
    for modality, paths in by_modality.items():
        index.tables.delete(tables[modality], paths)
    gone_files = {p for _, p in plan.delete} - {it.file.path for it in plan.reuse + plan.embed}
    return len(gone_files - {it.source for it in plan.reuse})


def _reuse(index: Index, tables: dict[str, str], items: Sequence[Item], describe: Describer, own: bool) -> None:
    """Write rows for files whose content is already stored (touched, renamed or copied): no encoder."""
    groups: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        groups[it.modality].append(it)
    for modality, group in groups.items():
        for start in range(0, len(group), 512):
            chunk = group[start : start + 512]
            sources = [it.file.path if own else it.source for it in chunk]
            records, vectors = index.tables.fetch(tables[modality], sorted(set(sources)))
            rows: dict[str, list[int]] = defaultdict(list)  # a path's rows: one, or its moments
            for i, r in enumerate(records):
                rows[r.path].append(i)
            keep = [(it, i) for it, s in zip(chunk, sources, strict=True) for i in rows.get(s, [])]
            # the content is the stored one: its media info is copied, the path fields and tags are this path's
            new = [
                file_record(
                    it,
                    records[i].encoder,
                    records[i].bridge,
                    describe(it.file.path, stored_info(records[i])),
                    (records[i].start, records[i].end),
                    records[i].track,
                )
                for it, i in keep
            ]
            idx = [i for _, i in keep]
            index.tables.upsert(tables[modality], new, {c: v[idx] for c, v in vectors.items()})


def _embed_all(
    index: Index,
    tables: dict[str, str],
    items: Sequence[Item],
    batch: int,
    failed: list[tuple[str, str]],
    progress: Progress,
    describe: Describer,
    ingest: IngestConfig | None = None,
) -> int:
    """Embed new or changed files into their tables (modality -> table of one backend), one committed
    upsert per batch (a file's moments together, however many chunks they were encoded in: `moment_chunk`, see
    moments.encode_moments); returns how many files were written. ingest: the run's decode and chunk
    settings (default: configs/search.toml's)."""
    groups: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        groups[it.modality].append(it)
    written: set[str] = set()
    listed = {p for p, _ in failed}  # a video fails once, not once per table
    for modality, group in sorted(groups.items()):  # audio before image: a video's sound first (plan.py)
        table = tables[modality]
        stage = f"embed {table}"
        progress.start(stage, len(group))
        chunks = [group[start : start + batch] for start in range(0, len(group), batch)]
        encoder = index.models.file_encoder(table)
        with_meta = "tags" in index.tables.columns(table)  # an older table has no metadata columns
        paths = [[it.file.path for it in chunk] for chunk in chunks]
        plan = moment_chunk = None
        if ingest is not None:
            plan = plan_decode(encoder, len(paths), ingest.decode, ingest.decode_workers, ingest.prefetch_batches)
            moment_chunk = ingest.moment_chunk
        results = encode_moments(encoder, modality, paths, plan, moment_chunk, progress, stage)
        for chunk, (ok, native, bad, spans) in zip(chunks, results, strict=True):
            failed.extend((p, why) for p, why in bad if p not in listed)
            listed.update(p for p, _ in bad)
            # A file that changed into something undecodable loses its old row: the vectors no longer
            # describe it. Files that were never indexed have nothing to remove.
            if bad:
                index.tables.delete(table, [p for p, _ in bad])
            if ok:
                records, vectors = embedded_rows(
                    index.models, table, [chunk[i] for i in ok], native, describe, with_meta, spans
                )
                # whole: rows left from the files' earlier content (moments past a changed video's new end)
                # go in the same commit; then the rows of files with nothing for this table now (a film that
                # lost its sound)
                index.tables.upsert(table, records, vectors, whole=True)
                nothing = [chunk[i].file.path for i, s in zip(ok, spans, strict=True) if not s]
                held = list(index.tables.lookup(table, nothing)) if nothing else []
                if held:  # no commit for a silent track that never had rows
                    index.tables.delete(table, held)
                written.update(chunk[i].file.path for i, s in zip(ok, spans, strict=True) if s)
            progress.advance(stage, len(chunk))
        progress.finish(stage)
    return len(written)
