"""Diff a scanned folder against the index: what to skip, re-stamp, reuse, embed and delete.

- unchanged: same path, size and mtime as the stored row: skipped without reading the file;
- touched: same path and content hash, new mtime: only the bookkeeping is rewritten;
- reuse: content already stored under another path (a rename when that path is gone, else a copy):
  its vectors are copied, nothing is re-embedded;
- embed: new or changed content, with the modality detected from the bytes;
- delete: stored paths under the scanned root that are gone, changed modality or stopped being media.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from avsearch.indexing.progress import NoProgress, Progress
from avsearch.media.detect import Detected
from avsearch.media.walk import ScannedFile
from avsearch.store.tables import FileRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    modality: str
    file: ScannedFile
    hash: str
    source: str = ""  # for reuse: the stored path holding the same content


@dataclass
class Plan:
    unchanged: int = 0
    touched: list[Item] = field(default_factory=list)
    reuse: list[Item] = field(default_factory=list)
    embed: list[Item] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)  # (modality, path)
    ignored: list[str] = field(default_factory=list)  # not media, or a modality this index cannot embed
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def renamed(self) -> int:
        gone = {p for _, p in self.delete}
        return sum(1 for it in self.reuse if it.source in gone)


def _plan_file(
    plan: Plan,
    f: ScannedFile,
    old: tuple[str, FileRecord] | None,
    by_hash: dict[str, tuple[str, str]],
    detect: Callable[[str], Detected],
    hasher: Callable[[str], str],
    supported: Collection[str],
) -> None:
    """Decide for one new or changed file (old: its stored (modality, record), if any)."""
    # New files are typed first (reads a few bytes), so non-media files are never hashed.
    modality = None
    if old is None:
        modality = _media_kind(plan, f.path, detect(f.path), supported)
        if modality is None:
            return
    try:
        digest = hasher(f.path)
    except OSError as exc:
        plan.failed.append((f.path, f"cannot read: {exc.strerror or exc}"))
        return
    if old is not None and old[1].hash == digest:
        plan.touched.append(Item(old[0], f, digest))
        return
    if digest in by_hash:
        source_modality, source = by_hash[digest]
        plan.reuse.append(Item(source_modality, f, digest, source))
        if old is not None and old[0] != source_modality:
            plan.delete.append((old[0], f.path))
        return
    if old is not None:
        modality = _media_kind(plan, f.path, detect(f.path), supported)
        if modality is None:  # it was media before: its vectors no longer describe the file
            plan.delete.append((old[0], f.path))
            return
    plan.embed.append(Item(modality, f, digest))
    if old is not None and old[0] != modality:
        plan.delete.append((old[0], f.path))


def _media_kind(plan: Plan, path: str, found: Detected, supported: Collection[str]) -> str | None:
    """The file's modality when this index takes it; else None, with the file listed as failed (media
    that cannot be read, or of a kind no bridge of this index takes) or ignored (not media)."""
    if found.failed:
        plan.failed.append((path, str(found.reason)))
    elif found.kind is None:
        plan.ignored.append(path)
    elif found.kind not in supported:
        plan.failed.append((path, f"a {found.kind} file; this index holds {', '.join(sorted(supported))} only"))
    else:
        return found.kind
    return None


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def make_plan(
    root: str,
    scanned: list[ScannedFile],
    stored: dict[str, dict[str, FileRecord]],
    detect: Callable[[str], Detected],
    hasher: Callable[[str], str],
    supported: Collection[str],
    progress: Progress | None = None,
) -> Plan:
    """stored: modality -> path -> record. detect(path) -> media/detect.py's verdict; hasher(path) -> hex
    hash."""
    progress = progress or NoProgress()
    plan = Plan()
    where = {p: (m, r) for m, rows in stored.items() for p, r in rows.items()}
    by_hash = {r.hash: (m, p) for m, rows in stored.items() for p, r in rows.items()}
    on_disk = {f.path for f in scanned}
    todo = []
    for f in scanned:
        old = where.get(f.path)
        if old is not None and old[1].size == f.size and old[1].mtime_ns == f.mtime_ns:
            plan.unchanged += 1
        else:
            todo.append(f)

    progress.start("hash", len(todo))
    for f in todo:
        progress.advance("hash")
        _plan_file(plan, f, where.get(f.path), by_hash, detect, hasher, supported)
    progress.finish("hash")

    plan.delete += [(m, p) for p, (m, _) in where.items() if p not in on_disk and under(p, root)]
    log.info(
        "plan: %d unchanged, %d touched, %d reused, %d to embed, %d to delete, %d ignored",
        plan.unchanged,
        len(plan.touched),
        len(plan.reuse),
        len(plan.embed),
        len(plan.delete),
        len(plan.ignored),
    )
    return plan
