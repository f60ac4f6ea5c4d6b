"""Bring the FAISS indexes up to date with the tables after an index run.

One index per (modality, column): `native` answers text and same-modality queries in the encoder's own
space, `proj_<bridge>` answers the other modalities' queries through that bridge. An index is rebuilt (or,
for IVF kinds, updated in place) when the table version it was built from is not the current one.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from avsearch.embedding.models import Models
from avsearch.errors import WeightsMissingError
from avsearch.indexing.progress import NoProgress, Progress
from avsearch.modalities import TEXT
from avsearch.store.ann import FLAT, IVF_RABITQ_REFINE, choose_kind, vectors_on_disk
from avsearch.store.ann_build import build_index
from avsearch.store.ann_files import ann_name, new_vectors_file
from avsearch.store.ann_stream import build_streamed
from avsearch.store.ann_update import update_in_place
from avsearch.store.config import AnnConfig
from avsearch.store.index import Index
from avsearch.store.table_chunks import TableChunks
from avsearch.store.table_schema import NATIVE
from avsearch.store.tables import MediaStore

log = logging.getLogger(__name__)

MIN_REAL_QUERIES = 200  # below this many indexed cross-modal vectors, captions are added for tuning


def refresh_indexes(index: Index, cfg: AnnConfig, progress: Progress | None = None) -> dict[str, dict[str, Any]]:
    """Rebuild stale FAISS indexes; returns name -> saved JSON (parameters, table version) of each."""
    progress = progress or NoProgress()
    store, models = index.tables, index.models
    out: dict[str, dict[str, Any]] = {}
    for modality in index.manifest.modalities:
        for column in store.vector_columns(modality):
            name = ann_name(modality, column)
            version = store.version(modality)
            meta = index.ann_meta(name)
            if store.count(modality) == 0:
                index.remove_ann(name)
                continue
            if meta is not None and meta["table_version"] == version:
                out[name] = meta
                continue
            stage = f"index {name}"
            progress.start(stage, None)
            n, dim = store.count(modality), store.dim(modality, column)
            if vectors_on_disk(n, dim, cfg):
                out[name] = _streamed(index, cfg, modality, column, version, n)
                progress.finish(stage)
                continue
            paths, vectors, version = store.vectors(modality, column)
            queries, source, guide = None, "", None
            kind = choose_kind(len(paths), vectors.shape[1], cfg)
            if kind != FLAT:
                wanted = cfg.guide_sample if cfg.query_guided and kind == IVF_RABITQ_REFINE else 0
                queries, source, guide = guided_queries(store, models, cfg, modality, column, wanted)
            previous = index.ann(name, use_gpu=False)
            trained = (previous.index, previous.params) if previous is not None else None
            if previous is not None and previous.params.vectors_on_disk:
                trained = None  # its codes stay, its vectors are not in the index: a fresh build
            built, params = build_index(vectors, cfg, queries, source, trained=trained, guide=guide)
            out[name] = index.save_ann(name, built, params, paths, version)
            progress.finish(stage)
            log.info("FAISS %s: %s over %d vectors", name, params.kind, params.n)
    return out


def _streamed(index: Index, cfg: AnnConfig, modality: str, column: str, version: int, n: int) -> dict[str, Any]:
    """Build (or update) the index of one column too large for memory from the table in chunks, re-ranking
    from the table's rows or a copy of them in a file beside it ([ann] rerank_from; store/ann_stream.py);
    returns the saved JSON."""
    name = ann_name(modality, column)
    source = TableChunks(index.tables, modality, column, version, n, cfg.stream_chunk_rows)
    previous = index.ann(name, use_gpu=False, read_rows=False)  # an update reads no row of the old version
    trained = None
    if previous is not None and previous.params.vectors_on_disk and previous.params.dim == source.dim:
        updated = update_in_place(previous.index, previous.params, previous.paths, source)
        if updated is not None:  # the rows added, removed or changed since, into the same lists
            built, params, paths = updated
            return index.save_ann(name, built, params, paths, version)
        trained = (previous.index, previous.params)
    wanted = cfg.stream_guide_queries if cfg.query_guided and cfg.refined_codes == "rabitq" else 0
    queries, query_source, guide = guided_queries(index.tables, index.models, cfg, modality, column, wanted)
    in_table = cfg.rerank_from == "table" and index.location.is_local
    vectors_to = source.table_vectors() if in_table else new_vectors_file(index.location, name)
    built, params = build_streamed(source, cfg, vectors_to, queries, query_source, trained=trained, guide=guide)
    log.info("FAISS %s: %s over %d vectors (streamed, vectors on disk)", name, params.kind, params.n)
    return index.save_ann(name, built, params, source.paths, version)


def tuning_queries(
    store: MediaStore, models: Models, cfg: AnnConfig, modality: str, column: str, seed: int = 0
) -> tuple[np.ndarray | None, str]:
    """Cross-modal query vectors for tuning the index of (modality, column): (M, d) and their source.

    proj_<bridge>: the other side's modality vectors projected by that bridge (real cross-modal
    queries); with none indexed, captions through a text tower on the other side and the bridge.
    native: captions through this space's own text tower (text -> image in CLIP, text -> audio in CLAP),
    and the other file modality's vectors where a space holds two (CAV-MAE: sounds against pictures).
    The other tables' vectors are a random sample of at most cfg.max_tuning_queries rows (`seed`), read
    row by row: a whole column may not fit in memory (10M x 512 float32 is 20 GB).
    """
    queries, source, _ = guided_queries(store, models, cfg, modality, column, 0, seed)
    return queries, source


def guided_queries(
    store: MediaStore, models: Models, cfg: AnnConfig, modality: str, column: str, guide: int, seed: int = 0
) -> tuple[np.ndarray | None, str, np.ndarray | None]:
    """tuning_queries, and up to `guide` more of the other tables' vectors to guide a build's spills
    (ann_build.build_index): (queries, source, guiding sample or None). Both come from one draw of
    distinct rows, so no guiding row is a tuning or held-out query; captions only ever tune."""
    rng = np.random.default_rng(seed)
    manifest = models.manifest
    if column == NATIVE:
        entry = manifest.modalities[modality]
        found: list[tuple[np.ndarray, str]] = []
        # A space holding two file modalities natively (CAV-MAE: sounds and pictures) has real cross-modal
        # queries in its other table.
        kind = manifest.kind(modality)
        same = [m for m, e in manifest.modalities.items() if e.space == entry.space and manifest.kind(m) != kind]
        q, guiding = _sampled(store, same, NATIVE, cfg.max_tuning_queries, rng, guide)
        if q is not None:
            found.append((q, f"{'+'.join(same)} vectors in {entry.space}"))
        texts = _captions(models, entry.encoder, cfg) if entry.text else None
        if texts is not None:
            found.append((texts, f"captions through {entry.space} text"))
        if not found:
            return None, "", None
        return np.concatenate([q for q, _ in found]), "; ".join(label for _, label in found), guiding
    ref = next(b for b in manifest.bridges.values() if b.column == column)
    space = manifest.modalities[modality].space
    others = [m for m, e in manifest.modalities.items() if m != modality and e.space in ref.spaces]
    found = []
    q, guiding = _sampled(store, others, column, cfg.max_tuning_queries, rng, guide)
    if q is not None:
        found.append((q, f"{'+'.join(others)} vectors projected by {ref.name}"))
    # Few real cross-modal queries make a noisy recall estimate: captions on the other side help.
    text_sides = [e for e in manifest.modalities.values() if e.space in ref.spaces and e.space != space and e.text]
    if sum(len(q) for q, _ in found) < MIN_REAL_QUERIES and text_sides:
        other = text_sides[0]
        texts = _captions(models, other.encoder, cfg)
        if texts is not None:
            projected = models.project(ref.name, other.space, texts, TEXT)
            found.append((projected, f"captions through {other.space} text + {ref.name}"))
    if not found:
        return None, "", None
    return np.concatenate([q for q, _ in found]), "; ".join(label for _, label in found), guiding


def _captions(models: Models, encoder: str, cfg: AnnConfig) -> np.ndarray | None:
    """cfg.tuning_captions through encoder's text tower; None when there are none, or when its weights are
    not on this machine (an index of vectors made elsewhere, `avsearch index --embeddings`, needs no model:
    the index is then tuned on the other queries it has, or on queries drawn from its own vectors)."""
    if not cfg.tuning_captions:
        return None
    try:
        return models.encode_captions(encoder, cfg.tuning_captions)
    except WeightsMissingError as exc:
        log.warning("tuning captions not encoded (%s): tuning without them", str(exc).splitlines()[0][:300])
        return None


def _sampled(
    store: MediaStore, tables: list[str], column: str, cap: int, rng: np.random.Generator, more: int = 0
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """At most `cap` vectors of `column`, drawn without replacement from the rows of `tables` together (one
    draw over all their rows, as if they were one column), only those rows read; and up to `more` other
    rows of the same draw (none of the first ones). (None, None) when the tables hold no rows; the second
    is None when the draw left none over."""
    present = set(store.modalities())
    sizes = [(t, store.version(t), store.count(t)) for t in tables if t in present]
    total = sum(n for _, _, n in sizes)
    if total == 0:
        return None, None
    drawn = rng.choice(total, min(total, cap + more), replace=False)  # in random order: split, then sort
    picks = np.sort(drawn)
    parts, start = [], 0
    for table, version, n in sizes:
        mine = picks[(picks >= start) & (picks < start + n)] - start
        if len(mine):
            parts.append(store.take_vectors(table, column, mine, version))
        start += n
    read = np.concatenate(parts)  # row i is picks[i]
    first = np.sort(drawn[:cap])
    rest = np.sort(drawn[cap:])
    at_first, at_rest = np.searchsorted(picks, first), np.searchsorted(picks, rest)
    return read[at_first], (read[at_rest] if len(rest) else None)
