"""`avsearch index --embeddings DIR`: index vectors someone already extracted, without their media.

DIR holds `{modality}.{space}.npy` files, (N, dim) float32, as `avsearch embed` writes them (image.clip.npy,
audio.clap.npy, pointcloud.ulip.npy; audio.cavmae.npy and image.cavmae.npy for an index with the CAV-MAE
backend), optionally with `{modality}.{space}.rows.jsonl` (one {"source": ...}
per row, the item ids) and `embed_manifest.json` (the encoder fingerprint, checked against the index's).
Rows go through the same bridges, tables and FAISS indexes as embedded files: only decoding and encoding
are skipped. An item's id is its source from rows.jsonl, else `<file>#<row>`. A row of rows.jsonl may
also carry the item's filterable metadata (`avsearch query --where`): folder, ext, tags (a list), duration,
sample_rate, width, height, points; what it leaves out is null. A row with `start` and `end` (seconds) is a
moment of its source, as `avsearch index` makes a video's frames and sound segments: its id is the moment's,
and its file's moments merge in results (a video's frame vectors extracted elsewhere, for example).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from avsearch.errors import InputError
from avsearch.indexing.pipeline import IndexSummary, finish_run
from avsearch.indexing.progress import NoProgress, Progress
from avsearch.media.metadata import FileMeta, MediaInfo, split_tags
from avsearch.store.config import SearchConfig, load_search_config
from avsearch.store.index import Index
from avsearch.store.table_rows import key_prefixes
from avsearch.store.table_schema import FileRecord, moment_key, path_key

Span = tuple[float | None, float | None]  # a moment's (start, end) seconds; (None, None): a whole file

log = logging.getLogger(__name__)

EXTERNAL = "external"  # encoder stamp of rows whose vectors came without an encoder fingerprint
_CHUNK = 4096  # rows per upsert (rows indexed before) and per batch of an append
# New rows per append commit: Lance's rows per data file, so that the end-of-run compaction has nothing to
# rewrite (4,096-row commits left 2,441 fragments at 10M rows, 41 GB to rewrite); a kill loses at most this
_COMMIT_ROWS = 1 << 20


def index_embeddings(
    folder: str | Path, index: Index, progress: Progress | None = None, config: SearchConfig | None = None
) -> IndexSummary:
    """Add (or replace, by id) the vectors under `folder` in `index`; files that do not fit are listed."""
    started = time.perf_counter()
    cfg = config or load_search_config()
    progress = progress or NoProgress()
    folder = Path(folder).expanduser().absolute()
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    summary = IndexSummary(str(folder), str(index.path))
    fingerprints = _fingerprints(folder)
    for path in sorted(folder.glob("*.npy")):
        modality, _, space = path.name.removesuffix(".npy").partition(".")
        table = _table_of(index, modality, space)
        if table is None:
            summary.failed.append((str(path), _why_not(modality, space, index)))
            continue
        entry = index.manifest.modalities[table]
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
        if vectors.ndim != 2 or vectors.shape[1] != entry.native_dim:
            summary.failed.append((str(path), f"shape {vectors.shape}, expected (N, {entry.native_dim})"))
            continue
        fingerprint = fingerprints.get(path.stem)
        if fingerprint is not None:
            index.manifest.check_encoder(entry.encoder, fingerprint, str(index.path))
            if index.manifest.record_encoder(entry.encoder, fingerprint):
                index.commit()
        ids, metas, spans = _rows(path, len(vectors))
        track = index.manifest.kind(table)  # a moment's key names its track (image: frames; audio: sound)
        rows = _Rows(table, path, ids, metas, spans, fingerprint or EXTERNAL, track)
        summary.scanned += len(ids)
        stage = f"vectors {table}"
        progress.start(stage, len(ids))
        held = index.tables.held_keys(table)  # one read of the key column, not one key join per batch
        for first in range(0, len(ids), _COMMIT_ROWS):
            span = range(first, min(first + _COMMIT_ROWS, len(ids)))
            batches = _counted(rows.batches(index, span), summary, progress, stage)
            if _any_held(held, [_key(ids[i], spans[i][0], track) for i in span]):
                # rows indexed before (a re-run, or a run resumed after a kill): replaced by key, as before
                for records, projected in batches:
                    index.tables.upsert(table, records, projected)
            else:  # all new: appended in one commit (one Lance fragment), no per-batch key join
                index.tables.append(table, batches)
        progress.finish(stage)
    return finish_run(index, summary, cfg, progress, summary.added > 0, started)


@dataclass(frozen=True)
class _Rows:
    """One .npy file's rows on their way to `table`: the file, ids, metadata, moment times."""

    table: str
    path: Path
    ids: list[str]
    metas: list[FileMeta]
    spans: list[Span]
    encoder: str  # the fingerprint from embed_manifest.json, else EXTERNAL
    track: str

    def batches(self, index: Index, rows: range) -> Iterator[tuple[list[FileRecord], dict[str, np.ndarray]]]:
        """`rows` in batches of _CHUNK: records, and every vector column of the table (bridges applied).
        The file is mapped anew for each call: pages read through a map stay in the process's resident
        memory while the map lives (a 10M x 512 file would count 20 GB by the end of the run)."""
        vectors = np.load(self.path, mmap_mode="r", allow_pickle=False)
        for start in range(rows.start, rows.stop, _CHUNK):
            part = slice(start, min(start + _CHUNK, rows.stop))
            native = np.asarray(vectors[part], dtype=np.float32)
            native = native / np.maximum(np.linalg.norm(native, axis=1, keepdims=True), 1e-12)
            stamp = index.manifest.bridge_stamp(self.table)
            records = [
                FileRecord(i, 0, 0, _digest(v), self.encoder, stamp, m, a, b, None if a is None else self.track)
                for i, v, m, (a, b) in zip(self.ids[part], native, self.metas[part], self.spans[part], strict=True)
            ]
            yield records, index.models.all_vectors(self.table, native)


def _counted(
    batches: Iterator[tuple[list[FileRecord], dict[str, np.ndarray]]],
    summary: IndexSummary,
    progress: Progress,
    stage: str,
) -> Iterator[tuple[list[FileRecord], dict[str, np.ndarray]]]:
    for records, vectors in batches:
        yield records, vectors
        summary.added += len(records)
        progress.advance(stage, len(records))


_TEXT_META = ("folder", "ext")
_NUMBER_META = {"duration": float, "sample_rate": int, "width": int, "height": int, "points": int}


def _rows(path: Path, n: int) -> tuple[list[str], list[FileMeta], list[Span]]:
    """Each row's id, metadata and time range, from the .rows.jsonl beside `path` (else `<file>#<row>`,
    no metadata, whole files). A moment's id is its source and start: one file may have many."""
    rows = path.with_name(path.name.removesuffix(".npy") + ".rows.jsonl")
    if not rows.is_file():
        return [f"{path}#{i}" for i in range(n)], [FileMeta()] * n, [(None, None)] * n
    try:
        parsed = [json.loads(line) for line in rows.read_text(encoding="utf-8").splitlines() if line]
        ids = [str(row["source"]) for row in parsed]
        metas = [_meta(row, f"{rows}:{number}") for number, row in enumerate(parsed, start=1)]
        spans = [_span(row, f"{rows}:{number}") for number, row in enumerate(parsed, start=1)]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{rows}: not a rows file of `avsearch embed` ({exc})") from exc
    distinct = len(set(zip(ids, (start for start, _ in spans), strict=True)))
    if len(ids) != n or distinct != n:
        raise InputError(f"{rows}: {len(ids)} ids ({distinct} distinct) for {n} rows of {path.name}")
    return ids, metas, spans


def _span(row: dict, where: str) -> Span:
    """A row's (start, end) in seconds, (None, None) for a whole file; InputError naming the row otherwise."""
    start, end = row.get("start"), row.get("end")
    if start is None and end is None:
        return None, None
    if start is None or end is None:
        raise InputError(f"{where}: a moment needs start and end (seconds), got start={start!r}, end={end!r}")
    numbers = [v for v in (start, end) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != 2 or not 0 <= start < end or not np.isfinite(end):
        raise InputError(f"{where}: a moment's start and end must be seconds, 0 <= start < end, got {start!r}, {end!r}")
    return float(start), float(end)


def _meta(row: dict, where: str) -> FileMeta:
    """The metadata keys of one rows.jsonl row; InputError naming the row for a value of the wrong type."""
    for key in _TEXT_META:
        if row.get(key) is not None and not isinstance(row[key], str):
            raise InputError(f"{where}: {key} must be a string, got {row[key]!r}")
    numbers = {}
    for key, kind in _NUMBER_META.items():
        value = row.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(f"{where}: {key} must be a number, got {value!r}")
        numbers[key] = None if value is None else kind(value)
    ext = row.get("ext")
    return FileMeta(
        row.get("folder"),
        ext.lstrip(".").lower() if ext is not None else None,
        split_tags(row.get("tags"), where),
        MediaInfo(**numbers),
    )


def _fingerprints(folder: Path) -> dict[str, str]:
    """Output name ("image.clip") -> encoder fingerprint, from `avsearch embed`'s manifest when present."""
    manifest = folder / "embed_manifest.json"
    if not manifest.is_file():
        return {}
    outputs = json.loads(manifest.read_text(encoding="utf-8")).get("outputs", {})
    return {name: out["fingerprint"] for name, out in outputs.items() if "fingerprint" in out}


def _table_of(index: Index, modality: str, space: str) -> str | None:
    """The table holding `modality` files' vectors of `space` (image.clip -> "image", audio.cavmae ->
    "cavmae_audio"), or None when the index has none."""
    manifest = index.manifest
    return next((t for t, e in manifest.modalities.items() if e.space == space and manifest.kind(t) == modality), None)


def _why_not(modality: str, space: str, index: Index) -> str:
    holds = ", ".join(f"{index.manifest.kind(t)}.{e.space}.npy" for t, e in index.manifest.modalities.items())
    hint = " (CAV-MAE vectors need an index with that backend: --backend cavmae or both)" if space == "cavmae" else ""
    return f"not vectors this index holds (it takes {holds}){hint}"


def _key(item: str, start: float | None, track: str) -> str:
    """The row key of an item (`FileRecord.key`): its id's, or its moment's."""
    return path_key(item) if start is None else moment_key(item, start, track)


def _any_held(held: np.ndarray, keys: list[str]) -> bool:
    """Whether any of `keys` may be in the table (`held`: sorted `key_prefixes` of its rows)."""
    if not held.size or not keys:
        return False
    mine = key_prefixes(pa.array(keys, pa.string()))
    at = np.minimum(np.searchsorted(held, mine), held.size - 1)
    return bool((held[at] == mine).any())


def _digest(vector: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(vector).tobytes(), digest_size=16).hexdigest()
