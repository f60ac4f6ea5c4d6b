"""`avsearch embed`: media folders and caption files -> the {modality}.{space}.npy training memories.

Outputs in OUT (read by `avsearch train`):
  {modality}.{space}.npy         (rows, dim) float32, rows L2-normalised (e.g. image.clip.npy,
                                 audio.clap.npy; captions give text.clip.npy AND text.clap.npy, same
                                 row order)
  {modality}.{space}.rows.jsonl  one line per row: {"row", "source"} (+ "file", "line" for captions)
  skipped.jsonl                  files left out, each with its reason
  embed_manifest.json            per output: rows, dim, encoder, fingerprint, job key
Work is kept in OUT/.partial/ as shards (avsearch.embedding.shards) so an interrupted run resumes;
an output whose job key (encoder fingerprint + inputs) is unchanged is not recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from avsearch.embedding.shards import ShardStore, atomic_save_npy, atomic_write_bytes
from avsearch.embedding.stream import encode_batches
from avsearch.encoders.base import Encoder
from avsearch.encoders.registry import embed_option, embed_routes, get_spec, load_encoder
from avsearch.errors import InputError
from avsearch.media.detect import detect
from avsearch.media.failures import NOT_MEDIA
from avsearch.media.text import read_caption_lines
from avsearch.media.walk import collect_files
from avsearch.modalities import TEXT

log = logging.getLogger(__name__)

# Files decoded and encoded together: bounds memory (an hour of audio is 360 windows of 1.8 MB).
FILE_BATCH = {"image": 64, "audio": 4, "pointcloud": 16, "text": 512}
MANIFEST = "embed_manifest.json"


@dataclass
class Output:
    name: str  # "{modality}.{space}"
    rows: int
    dim: int
    encoder: str
    reused: bool  # True when an up-to-date earlier result was kept


@dataclass
class EmbedReport:
    out_dir: Path
    outputs: list[Output] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)


@dataclass
class _Item:
    source: str  # file path, or caption text
    extra: dict[str, Any] = field(default_factory=dict)  # "file"/"line" for captions


@dataclass
class _Job:
    modality: str
    encoder: str
    items: list[_Item]


def _identity(items: Sequence[_Item], modality: str) -> str:
    digest = hashlib.sha256(modality.encode())
    for item in items:
        digest.update(item.source.encode("utf-8", "surrogateescape") + b"\0")
        if modality != TEXT:
            stat = Path(item.source).stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def _batches(items: Sequence[_Item], size: int) -> Iterator[Sequence[_Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _run_job(
    job: _Job, encoder: Encoder, store: ShardStore, name: str, shard_rows: int, progress: bool
) -> tuple[np.ndarray, list[_Item], list[tuple[str, str]]]:
    """Embed a job shard by shard (skipping shards already on disk); return all rows in input order."""
    file_batch = min(FILE_BATCH.get(job.modality, 16), shard_rows)
    bar = tqdm(total=len(job.items), desc=name, unit="item", file=sys.stderr, disable=not progress)
    for index, start in enumerate(range(0, len(job.items), shard_rows)):
        shard = job.items[start : start + shard_rows]
        if store.done(index):
            bar.update(len(shard))
            continue
        vectors, kept, skipped = [], [], []
        batches = list(_batches(shard, file_batch))
        if job.modality == TEXT:
            results: Iterable = ((range(len(b)), encoder.encode_text([it.source for it in b]), []) for b in batches)
        else:
            results = encode_batches(encoder, job.modality, [[it.source for it in b] for b in batches])
        for batch, (ok, v, s) in zip(batches, results, strict=True):
            vectors.append(v)
            kept += [batch[j] for j in ok]
            skipped += s
            bar.update(len(batch))
        rows = [json.dumps({"source": it.source, **it.extra}) for it in kept]
        store.write(index, np.concatenate(vectors), rows, [list(s) for s in skipped])
    bar.close()
    parts, items, skipped_all = [], [], []
    for index in range((len(job.items) + shard_rows - 1) // shard_rows):
        vec, meta = store.read(index)
        parts.append(vec)
        items += [_Item(**{"source": r.pop("source"), "extra": r}) for r in map(json.loads, meta["rows"])]
        skipped_all += [tuple(s) for s in meta["skipped"]]
    vectors = np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)
    return vectors, items, skipped_all


def _plan(
    sources: Sequence[Path | str],
    captions: Sequence[Path | str],
    routes: dict[str, list[str]] | None = None,
) -> tuple[list[_Job], list[tuple[str, str]]]:
    routes = routes if routes is not None else embed_routes()
    files, skipped = collect_files(sources) if sources else ([], [])
    groups: dict[str, list[str]] = {}
    for f in files:
        found = detect(Path(f.path))
        if found.failed:
            skipped.append((f.path, str(found.reason)))
        elif found.kind is None:
            skipped.append((f.path, NOT_MEDIA))
        else:
            groups.setdefault(found.kind, []).append(f.path)
    jobs: list[_Job] = []
    for modality, paths in groups.items():
        if not routes.get(modality):
            skipped += [(str(p), f"no encoder configured for {modality}") for p in paths]
            continue
        for name in routes[modality]:
            jobs.append(_Job(modality, name, [_Item(str(p)) for p in paths]))
    if captions:
        items = [
            _Item(text, {"file": str(cfile), "line": n}) for cfile in captions for n, text in read_caption_lines(cfile)
        ]
        if not routes.get(TEXT):
            raise InputError("caption files were given but no text encoder is configured for this bridge")
        jobs += [_Job(TEXT, name, items) for name in routes[TEXT]]
    return jobs, skipped


def embed_sources(
    sources: Sequence[Path | str],
    out_dir: Path | str,
    captions: Sequence[Path | str] = (),
    weights_dir: Path | str | None = None,
    device: str | None = None,
    progress: bool = True,
    load: Callable[..., Encoder] = load_encoder,
    routes: dict[str, list[str]] | None = None,
) -> EmbedReport:
    """Embed every media file under `sources` and every caption line of `captions` into `out_dir`.

    Returns an EmbedReport (outputs written, files skipped with reasons). Raises InputError when there
    is nothing to embed or a source/caption file is missing. `routes` (modality -> encoder names)
    replaces configs/encoders.toml's [embed] routes, e.g. TrainConfig.embed_routes() of a bridge.
    """
    out = Path(out_dir).expanduser()
    jobs, skipped = _plan(sources, captions, routes)
    if not jobs:
        named = {str(Path(s).expanduser().absolute()) for s in sources if Path(s).expanduser().is_file()}
        for source, why in skipped:
            if source in named:  # a file given by name says why it cannot be embedded
                raise InputError(f"{source}: {why}")
        raise InputError("nothing to embed: no audio, image or point-cloud file and no caption file given")
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest: dict[str, Any] = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.setdefault("outputs", {})
    # Each encoder is loaded once, with the union of the towers its jobs need.
    towers: dict[str, set[str]] = {}
    for job in jobs:
        towers.setdefault(job.encoder, set()).add(job.modality)
    encoders = {name: load(name, sorted(mods), weights_dir=weights_dir, device=device) for name, mods in towers.items()}
    report = EmbedReport(out)
    shard_rows = int(embed_option("shard_rows", 1024))
    for job in jobs:
        encoder = encoders[job.encoder]
        name = f"{job.modality}.{get_spec(job.encoder).space}"
        key = f"{encoder.fingerprint()}|{_identity(job.items, job.modality)}|{shard_rows}"
        done = manifest["outputs"].get(name, {})
        if done.get("key") == key and (out / f"{name}.npy").is_file():
            log.info("%s: up to date, kept", name)
            report.outputs.append(Output(name, done["rows"], done["dim"], job.encoder, True))
            skipped += [tuple(s) for s in done.get("skipped", [])]
            continue
        store = ShardStore(out / ".partial" / name, key)
        vectors, items, job_skipped = _run_job(job, encoder, store, name, shard_rows, progress)
        atomic_save_npy(out / f"{name}.npy", vectors)
        lines = [json.dumps({"row": i, "source": it.source, **it.extra}) for i, it in enumerate(items)]
        atomic_write_bytes(out / f"{name}.rows.jsonl", ("\n".join(lines) + "\n" if lines else "").encode())
        manifest["outputs"][name] = {
            "rows": int(vectors.shape[0]),
            "dim": int(vectors.shape[1]),
            "encoder": job.encoder,
            "fingerprint": encoder.fingerprint(),
            "key": key,
            "skipped": [list(x) for x in job_skipped],
        }
        atomic_write_bytes(manifest_path, json.dumps(manifest, indent=2).encode())
        store.remove()
        report.outputs.append(Output(name, int(vectors.shape[0]), int(vectors.shape[1]), job.encoder, False))
        skipped += job_skipped
    with contextlib.suppress(OSError):
        (out / ".partial").rmdir()  # only when empty
    report.skipped = sorted(set(skipped))
    text = "".join(json.dumps({"source": s, "reason": r}) + "\n" for s, r in report.skipped)
    atomic_write_bytes(out / "skipped.jsonl", text.encode())
    return report
