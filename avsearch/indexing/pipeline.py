"""`avsearch index`: scan, diff, embed in committed batches, sweep deletions, refresh FAISS indexes.

Every batch is one LanceDB commit, so a run stopped anywhere (Ctrl-C, kill -9) leaves each table at a
committed version, and the next run only does what is left. Rows are written before old paths are
deleted, so an interruption can leave a stale row for a moment but never lose a file's vectors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsearch.bridge.io import read_bridge_meta
from avsearch.errors import ConfigError, InputError
from avsearch.indexing.embed import embed_batch
from avsearch.indexing.hashing import content_hash
from avsearch.indexing.plan import Item, make_plan
from avsearch.indexing.progress import NoProgress, Progress
from avsearch.indexing.refresh import refresh_indexes
from avsearch.indexing.scan import scan_folder
from avsearch.media.detect import detect_kind
from avsearch.store.config import SearchConfig, load_search_config
from avsearch.store.manifest import Manifest, load_manifest, save_manifest
from avsearch.store.models import EncoderLoader, Models, bridge_ref, default_loader, plan_modalities
from avsearch.store.tables import FileRecord, MediaStore

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


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
    removed: int = 0
    ignored: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # rows per modality after the run
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)  # FAISS name -> parameters
    seconds: float = 0.0


def run_index(
    root: str | Path,
    index_dir: str | Path,
    bridges: Sequence[str | Path] | str | Path | None = None,
    weights_dir: str | Path | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    config: SearchConfig | None = None,
    encoder_loader: EncoderLoader | None = None,
) -> IndexSummary:
    """Index (or update the index of) the media under `root` into `index_dir`.

    bridges: bridge file(s) for a new index (audio-visual, and/or 3D); an existing index uses its own,
    and refuses others.
    """
    started = time.perf_counter()
    cfg = config or load_search_config()
    progress = progress or NoProgress()
    root = Path(root).expanduser().absolute()
    index_dir = Path(index_dir).expanduser().absolute()
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    batch = batch_size or cfg.ingest.batch_size
    if batch < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch}")
    index_dir.mkdir(parents=True, exist_ok=True)
    with _locked(index_dir):
        manifest = _open_manifest(index_dir, bridges)
        if str(root) not in manifest.roots:
            manifest.roots.append(str(root))
        save_manifest(index_dir, manifest)  # the index describes itself before any row is written
        store = MediaStore(index_dir)
        for modality, entry in manifest.modalities.items():
            store.ensure_table(modality, entry.native_dim, manifest.shared_dims(modality))
        loader = encoder_loader or default_loader(Path(weights_dir) if weights_dir else None, device)
        models = Models(manifest, index_dir, loader, device)

        progress.start("scan", None)
        scanned, problems = scan_folder(
            root,
            cfg.ingest.follow_symlinks,
            cfg.ingest.skip_hidden,
            exclude=index_dir,
            on_file=lambda n: progress.advance("scan", n),
        )
        progress.finish("scan")
        stored = {m: store.bookkeeping(m) for m in manifest.modalities}
        plan = make_plan(str(root), scanned, stored, detect_kind, content_hash, manifest.modalities, progress)
        summary = IndexSummary(
            str(root),
            str(index_dir),
            scanned=len(scanned),
            unchanged=plan.unchanged,
            touched=len(plan.touched),
            renamed=plan.renamed,
            copied=len(plan.reuse) - plan.renamed,
            ignored=len(plan.ignored),
        )
        summary.failed += problems + plan.failed

        _reuse(store, manifest, plan.touched, own=True)
        _reuse(store, manifest, plan.reuse, own=False)
        summary.added = _embed_all(store, models, plan.embed, batch, summary.failed, progress)
        by_modality: dict[str, list[str]] = defaultdict(list)
        for modality, path in plan.delete:
            by_modality[modality].append(path)
        gone_files = {p for _, p in plan.delete} - {it.file.path for it in plan.reuse + plan.embed}
        for modality, paths in by_modality.items():
            store.delete(modality, paths)
        summary.removed = len(gone_files - {it.source for it in plan.reuse})

        if plan.touched or plan.reuse or plan.embed or plan.delete:
            for modality in manifest.modalities:
                store.compact(modality)
        summary.indexes = refresh_indexes(store, models, cfg.ann, progress)
        manifest.ann = {name: meta["params"] for name, meta in summary.indexes.items()}
        save_manifest(index_dir, manifest)
        summary.counts = {m: store.count(m) for m in manifest.modalities}
    summary.seconds = time.perf_counter() - started
    return summary


def _open_manifest(index_dir: Path, bridges: Sequence[str | Path] | str | Path | None) -> Manifest:
    """The index's manifest (new from the bridges' metadata on a first run), bridges checked."""
    manifest = load_manifest(index_dir)
    if isinstance(bridges, (str, Path)):
        bridges = [bridges]
    if not bridges:
        if manifest is None:
            raise ConfigError(
                f"{index_dir} holds no index yet: pass --bridge FILE (a bridge from `avsearch train`, "
                "or the released audio-visual one imported with avsearch.bridge.io.import_released)"
            )
        return manifest
    metas, refs = [], {}
    for given in bridges:
        path = Path(given).expanduser().absolute()
        if not path.is_file():
            raise InputError(f"{path}: bridge file not found")
        meta, fingerprint = read_bridge_meta(path)
        if meta.name in refs:
            raise ConfigError(f"two bridges named {meta.name!r} were given ({refs[meta.name].path}, {path})")
        metas.append(meta)
        refs[meta.name] = bridge_ref(meta, fingerprint, path)
    if manifest is None:
        return Manifest(bridges=refs, modalities=plan_modalities(metas))
    manifest.check_bridges({n: r.fingerprint for n, r in refs.items()}, str(index_dir))
    for name, ref in refs.items():
        manifest.bridges[name].path = ref.path  # the same bridge may have moved
    return manifest


def _reuse(store: MediaStore, manifest: Manifest, items: Sequence[Item], own: bool) -> None:
    """Write rows for files whose content is already stored (touched, renamed or copied): no encoder."""
    groups: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        groups[it.modality].append(it)
    for modality, group in groups.items():
        for start in range(0, len(group), 512):
            chunk = group[start : start + 512]
            sources = [it.file.path if own else it.source for it in chunk]
            records, vectors = store.fetch(modality, sorted(set(sources)))
            row = {r.path: i for i, r in enumerate(records)}
            keep = [(it, row[s]) for it, s in zip(chunk, sources, strict=True) if s in row]
            new = [_record(it, records[i].encoder, records[i].bridge) for it, i in keep]
            idx = [i for _, i in keep]
            store.upsert(modality, new, {c: v[idx] for c, v in vectors.items()})


def _embed_all(
    store: MediaStore,
    models: Models,
    items: Sequence[Item],
    batch: int,
    failed: list[tuple[str, str]],
    progress: Progress,
) -> int:
    """Embed new or changed files, one committed upsert per batch; returns how many were written."""
    groups: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        groups[it.modality].append(it)
    written = 0
    for modality, group in sorted(groups.items()):
        stage = f"embed {modality}"
        progress.start(stage, len(group))
        for start in range(0, len(group), batch):
            chunk = group[start : start + batch]
            ok, native, bad = embed_batch(models, modality, [it.file.path for it in chunk])
            failed.extend(bad)
            # A file that changed into something undecodable loses its old row: the vectors no longer
            # describe it. Files that were never indexed have nothing to remove.
            if bad:
                store.delete(modality, [p for p, _ in bad])
            if ok:
                entry = models.manifest.modalities[modality]
                stamp = models.manifest.bridge_stamp(modality)
                records = [_record(chunk[i], entry.encoder_fingerprint or "", stamp) for i in ok]
                store.upsert(modality, records, models.all_vectors(modality, native))
                written += len(ok)
            progress.advance(stage, len(chunk))
        progress.finish(stage)
    return written


def _record(item: Item, encoder: str, bridge: str) -> FileRecord:
    f = item.file
    return FileRecord(f.path, f.size, f.mtime_ns, item.hash, encoder, bridge)


@contextlib.contextmanager
def _locked(index_dir: Path) -> Iterator[None]:
    """One writer per index: a second `avsearch index` on the same folder fails instead of interleaving."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; single-writer is then up to the user
        yield
        return
    fh = open(index_dir / LOCK_NAME, "w")  # noqa: SIM115 (held for the whole run)
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise InputError(f"{index_dir}: another `avsearch index` is writing this index") from exc
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()
