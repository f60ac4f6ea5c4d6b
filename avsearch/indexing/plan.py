"""Diff a scanned folder against the index: what to skip, re-stamp, reuse, embed and delete.

- unchanged: same path, size and mtime as the stored row: skipped without reading the file;
- touched: same path and content hash, new mtime: only the bookkeeping is rewritten;
- reuse: content already stored under another path (a rename when that path is gone, else a copy):
  its vectors are copied, nothing is re-embedded;
- embed: new or changed content, with the modality detected from the bytes (a video: an item for the
  image table, its frames, and one for the audio table, its sound);
- delete: stored paths under the scanned root that are gone, changed modality or stopped being media.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from avsearch.indexing.progress import NoProgress, Progress
from avsearch.media.detect import Detected
from avsearch.media.walk import ScannedFile
from avsearch.modalities import AUDIO, IMAGE, VIDEO, VIDEO_PARTS
from avsearch.store.table_schema import FileRecord

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
        return len({it.file.path for it in self.reuse if it.source in gone})


def files(items: Collection[Item]) -> int:
    """How many files `items` are about (a video has an item per table it fills: frames and sound)."""
    return len({it.file.path for it in items})


def _plan_file(
    plan: Plan,
    f: ScannedFile,
    old: list[tuple[str, FileRecord]],
    by_hash: dict[str, list[tuple[str, str]]],
    detect: Callable[[str], Detected],
    hasher: Callable[[str], str],
    supported: Collection[str],
) -> None:
    """Decide for one new or changed file (old: its stored (modality, record) per table holding it)."""
    # New files are typed first (reads a few bytes), so non-media files are never hashed.
    modalities: list[str] = []
    if not old:
        modalities = _media_kinds(plan, f.path, detect(f.path), supported)
        if not modalities:
            return
    try:
        digest = hasher(f.path)
    except OSError as exc:
        plan.failed.append((f.path, f"cannot read: {exc.strerror or exc}"))
        return
    if old and old[0][1].hash == digest:
        plan.touched += [Item(m, f, digest) for m, _ in old]
        return
    if digest in by_hash:
        source = by_hash[digest][0][1]
        stored = [m for m, p in by_hash[digest] if p == source]  # every table holding the source's rows
        plan.reuse += [Item(m, f, digest, source) for m in stored]
        plan.delete += [(m, f.path) for m, _ in old if m not in stored]
        return
    if old:
        modalities = _media_kinds(plan, f.path, detect(f.path), supported)
        if not modalities:  # it was media before: its vectors no longer describe the file
            plan.delete += [(m, f.path) for m, _ in old]
            return
    plan.embed += [Item(m, f, digest) for m in modalities]
    plan.delete += [(m, f.path) for m, _ in old if m not in modalities]


def _media_kinds(plan: Plan, path: str, found: Detected, supported: Collection[str]) -> list[str]:
    """The tables' modalities the file goes to when this index takes it (a video: frames to the image
    table, sound to the audio table); else none, with the file listed as failed (media that cannot be read,
    or of a kind no bridge of this index takes) or ignored (not media)."""
    if found.failed:
        plan.failed.append((path, str(found.reason)))
        return []
    if found.kind is None:
        plan.ignored.append(path)
        return []
    kinds = [m for m in VIDEO_PARTS if m in supported] if found.kind == VIDEO else [found.kind]
    kinds = [m for m in kinds if m in supported]
    if not kinds:
        plan.failed.append((path, f"a {found.kind} file; this index holds {', '.join(sorted(supported))} only"))
    return kinds


def _unwritten_parts(
    path: str, old: list[tuple[str, FileRecord]], detect: Callable[[str], Detected], supported: Collection[str]
) -> list[str]:
    """[IMAGE] for an unchanged video stored with sound rows only although it holds pictures: a run stopped
    between its two tables' commits (the sound's table is written first: pipeline.py embeds a run's files
    table by table in name order, audio before image). Only a file stored as sound moments and nothing else
    is looked at (its header read); a film with frames always has image rows, a silent track none."""
    if len(old) != 1 or old[0][0] != AUDIO or old[0][1].start is None or IMAGE not in supported:
        return []
    if detect(path).kind != VIDEO:
        return []  # a long recording
    from avsearch.errors import DecodeError
    from avsearch.media.video import probe

    try:
        return [IMAGE] if probe(path).has_video else []
    except DecodeError:
        return []


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
    where: dict[str, list[tuple[str, FileRecord]]] = defaultdict(list)  # path -> its tables (a video: two)
    by_hash: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for m, rows in stored.items():
        for p, r in rows.items():
            where[p].append((m, r))
            by_hash[r.hash].append((m, p))
    on_disk = {f.path for f in scanned}
    todo = []
    for f in scanned:
        old = where.get(f.path)
        if old and all((r.size, r.mtime_ns) == (f.size, f.mtime_ns) for _, r in old):
            plan.unchanged += 1
            plan.embed += [Item(m, f, old[0][1].hash) for m in _unwritten_parts(f.path, old, detect, supported)]
        else:
            todo.append(f)

    progress.start("hash", len(todo))
    for f in todo:
        progress.advance("hash")
        _plan_file(plan, f, where.get(f.path, []), by_hash, detect, hasher, supported)
    progress.finish("hash")

    plan.delete += [(m, p) for p, held in where.items() for m, _ in held if p not in on_disk and under(p, root)]
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
