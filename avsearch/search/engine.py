"""The search engine: open an index, embed a query along its route, search, and describe the hits."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avsearch.bridge.confidence import Calibration
from avsearch.errors import DecodeError, InputError
from avsearch.lazy_import import lazy_module
from avsearch.media.detect import detect
from avsearch.media.failures import NOT_MEDIA
from avsearch.media.metadata import metadata_config
from avsearch.modalities import CMCR, TEXT, VIDEO
from avsearch.search.delta import Delta, DeltaRows
from avsearch.search.filters import SearchFilters
from avsearch.search.moments import merge_hits, rows_wanted
from avsearch.search.piece import Piece, piece_vector, search_pieces
from avsearch.search.planner import ALL, Route, plan_routes
from avsearch.search.results import Hit, ResultSet
from avsearch.search.selection import RowSelector, glob_positions
from avsearch.store import torch_search
from avsearch.store.ann_files import LoadedAnn, ann_name
from avsearch.store.ann_search import every_list_parameters
from avsearch.store.exact import ENGINE
from avsearch.store.index import Index
from avsearch.store.table_schema import split_ref
from avsearch.timings import timed

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)

if TYPE_CHECKING:
    from avsearch.bridge.model import BridgeMeta

log = logging.getLogger(__name__)


__all__ = ["SearchEngine", "SearchFilters"]  # SearchFilters lives in search/filters/; imported from here too


def _labelled(result: ResultSet, route: Route) -> ResultSet:
    """A route's results named by backend and by the target's file modality (not its table's name)."""
    result.backend = route.backend
    if route.target_modality != route.target:
        result.target = route.target_modality
        result.hits = [replace(h, modality=route.target_modality) for h in result.hits]
    return result


class SearchEngine:
    """Queries against one `Index`. Models and FAISS indexes load on first use and stay loaded.

    Safe for concurrent searches (the server's threads): what loads lazily loads once under a lock, the
    last query's vectors are kept per thread, and the row caches lock their own updates. FAISS, torch and
    numpy release the GIL while they compute, so searches from several threads run in parallel.
    """

    def __init__(self, index: Index) -> None:
        self.index = index
        self.manifest = index.manifest
        self.store = index.tables
        self.models = index.models
        self._ann: dict[str, LoadedAnn | None] = {}
        self._load_lock = threading.Lock()  # FAISS files and bridge metadata: loaded once, not once per thread
        self._thread = threading.local()  # .native: this thread's last query vectors (one encode per query)
        self._calibrations: dict[str, BridgeMeta] = {}  # bridge name -> its metadata (score calibrations)
        cfg = metadata_config().search
        # Filters keeping at most this many rows are searched exactly over those rows (pre-filtering).
        self.prefilter_max_rows = cfg.prefilter_max_rows
        self._rows = RowSelector(self.store, cfg.cached_filters)
        self._delta = DeltaRows(self.store)  # rows added/deleted since a FAISS index (a run under way)
        self._warned: set[str] = set()

    def search_text(
        self,
        text: str,
        target: str = ALL,
        k: int = 10,
        filters: SearchFilters | None = None,
        backend: str | None = CMCR,
    ) -> list[ResultSet]:
        """Text against each target, in the target's own space when its encoder reads text. backend:
        "cmcr", "cavmae" (InputError: no text tower), "both" (C-MCR's lists only) or None (the default)."""
        if not text.strip():
            raise InputError("the query text is empty")
        return [
            _labelled(self._run(r, text, TEXT, self._embed(r, text=text), k, filters), r)
            for r in plan_routes(TEXT, target, self.manifest, backend)
        ]

    def search_file(
        self,
        path: str | Path,
        modality: str | None = None,
        target: str = ALL,
        k: int = 10,
        filters: SearchFilters | None = None,
        backend: str | None = CMCR,
    ) -> list[ResultSet]:
        """A media file against each target: natively for its own modality, via a bridge otherwise (C-MCR),
        or in CAV-MAE's space; backend "both" gives each target's list once per backend, C-MCR's first."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        if modality is None:
            found = detect(path)
            if found.failed:
                raise DecodeError(f"{path}: {found.reason}")
            if found.kind is None:
                raise InputError(f"{path}: {NOT_MEDIA}")
            modality = found.kind
        if modality == VIDEO:  # its frames and its sound, each a query of its own (search/piece.py)
            return search_pieces(path, None, None, None, lambda p: self.search_piece(p, target, k, filters, backend))
        routes = plan_routes(modality, target, self.manifest, backend)
        return [_labelled(self._run(r, str(path), modality, self._embed(r, path=path), k, filters), r) for r in routes]

    def search_piece(
        self,
        piece: Piece,
        target: str = ALL,
        k: int = 10,
        filters: SearchFilters | None = None,
        backend: str | None = CMCR,
    ) -> list[ResultSet]:
        """A piece of a sound or a video (search/piece.py: a range of it, its sound or its frames) against
        each target, as search_file."""
        routes = plan_routes(piece.modality, target, self.manifest, backend)
        return [
            _labelled(self._run(r, piece.label, piece.modality, self._embed(r, piece=piece), k, filters), r)
            for r in routes
        ]

    def search_item(
        self,
        item: str,
        target: str = ALL,
        k: int = 10,
        filters: SearchFilters | None = None,
        backend: str | None = CMCR,
    ) -> list[ResultSet]:
        """More like an indexed item (its path, or its id as results carry it): its stored vectors (of each
        backend asked for) are the query, so no model loads.

        The item itself (its row: one moment of a video) is left out of its own modality's results.
        """
        tables = sorted(self.manifest.modalities, key=lambda t: self.manifest.modalities[t].backend != CMCR)
        present = set(self.store.modalities())
        for table in (t for t in tables if t in present):
            records, _ = self.store.fetch(table, [item])
            if records:
                # the row itself (a moment of a video, given by its id) is left out of its own list
                item, row_key, modality = records[0].path, records[0].key, self.manifest.kind(table)
                break
        else:
            raise InputError(f"{item}: no such item in this index (give a path or id as `avsearch query` prints it)")
        results = []
        stored: dict[str, dict] = {}  # backend -> its table's vectors of the item
        for route in plan_routes(modality, target, self.manifest, backend):
            if route.backend not in stored:
                table = self.manifest.tables_of(route.backend)[modality]
                records, stored[route.backend] = self.store.fetch(table, [row_key]) if table in present else ([], {})
                if not records:
                    raise InputError(f"{item}: not embedded by the {route.backend} backend yet (run `avsearch index`)")
            own = route.target_modality == modality
            result = self._run(route, item, modality, stored[route.backend][route.column][:1], k + own, filters)
            if own:
                result.hits = [h for h in result.hits if h.id != row_key][:k]
                result.hits = [replace(h, rank=r) for r, h in enumerate(result.hits, start=1)]
            results.append(_labelled(result, route))
        return results

    @timed("embed query")
    def _embed(
        self, route: Route, text: str | None = None, path: Path | None = None, piece: Piece | None = None
    ) -> np.ndarray:
        """The query vector (1, d) in the route's space; one encoder pass per query, reused by routes."""
        key = (route.encoder, route.tower)
        native: dict[tuple[str, str], tuple[tuple[str | None, Path | None, Piece | None], np.ndarray]]
        native = self._thread.__dict__.setdefault("native", {})
        if key not in native or native[key][0] != (text, path, piece):
            enc = self.models.encoder(route.encoder, route.tower)
            if piece is not None:
                vec = piece_vector(enc, piece)
            else:
                vec = enc.encode_text([text]) if text is not None else enc.encode_files(route.tower, [path])
            native[key] = ((text, path, piece), vec)
        q = native[key][1]
        return q if route.bridge is None else self.models.project(route.bridge, route.query_space, q, route.tower)

    @timed("search")
    def _run(
        self,
        route: Route,
        query: str,
        query_modality: str,
        q: np.ndarray,
        k: int,
        filters: SearchFilters | None,
    ) -> ResultSet:
        """Search one route with a query vector q (1, d)."""
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        result = ResultSet(query, query_modality, route.target, route.space, "exact")
        if route.bridge is not None:
            ref = self.manifest.bridges[route.bridge]
            result.bridge = {"name": ref.name, "file": ref.path, "fingerprint": ref.fingerprint}
        if route.target not in self.store.modalities() or self.store.count(route.target) == 0:
            return result
        version = self.store.version(route.target)  # read once: each read checks the disk for a new commit
        ann = self._index(route, version)
        delta = None
        if ann is not None and ann.table_version != version:
            delta = self._delta.of(route.target, route.column, ann, version)
        # a table with moments: more rows than k, merged into moments of their files (search/moments.py)
        rows = rows_wanted(k) if self.store.has_moments(route.target) else k
        if ann is None:
            pairs = self._exact(route, q, rows, filters)
        else:
            # a guided index routes queries of another modality than its table's (text too) by its shift
            cross_modal = query_modality != route.target_modality
            pairs = self._search_ann(route, ann, q, rows, filters, result, delta, cross_modal)
        meta = self.store.file_stats(route.target, sorted({split_ref(p)[0] for _, p in pairs}))  # (size, mtime)
        if delta is not None:
            pairs = [(s, p) for s, p in pairs if split_ref(p)[0] in meta][:rows]  # a row deleted since: gone
        found = merge_hits(pairs, k, self.manifest.kind(route.target))
        calibration = self._calibration(route, query_modality)
        if calibration is not None:
            result.calibration = {
                "source": calibration.source,
                "score_at_90": calibration.score_at_90,
                "score_at_50": calibration.score_at_50,
            }
        probabilities = calibration.probability([m.score for m in found]) if calibration is not None else None
        result.hits = [
            Hit(
                rank,
                m.path,
                route.target,
                m.score,
                *meta.get(m.path, (None, None)),
                m.key,
                None if probabilities is None else round(float(probabilities[rank - 1]), 4),
                m.start,
                m.end,
                m.more,
            )
            for rank, m in enumerate(found, start=1)
        ]
        return result

    def _calibration(self, route: Route, query_modality: str) -> Calibration | None:
        """The score calibration of a route's bridge for (query modality, target modality), if it has one."""
        if route.bridge is None or route.backend != CMCR:
            return None
        if route.bridge not in self._calibrations:
            # the header only (no weights) when the query did not need the bridge (`--id`)
            from avsearch.bridge.fast import read_bridge_meta  # torch-free

            with self._load_lock:
                if route.bridge not in self._calibrations:
                    self._calibrations[route.bridge] = read_bridge_meta(self.models.bridge_file(route.bridge))[0]
        return self._calibrations[route.bridge].calibration(query_modality, route.target_modality)

    def _search_ann(
        self,
        route: Route,
        ann: LoadedAnn,
        q: np.ndarray,
        k: int,
        filters: SearchFilters | None,
        result: ResultSet,
        delta: Delta | None,
        cross_modal: bool = True,
    ) -> list[tuple[float, str]]:
        """Search the route's FAISS index; with a delta (the table has moved on since the index was
        built), also the rows added since, scored exactly, and a few more FAISS hits for those deleted.
        cross_modal: the query's modality is not the target table's (LoadedAnn.search)."""
        allowed = self._rows.positions(route.target, ann.paths, ann.table_version, filters)
        if allowed is not None and len(allowed) == len(ann.paths):
            allowed = None  # the filter keeps every row: the unfiltered (GPU) search answers
        if allowed is not None and filters.parsed is not None and len(allowed) <= self.prefilter_max_rows:
            # exact over the passing rows as the table is now: nothing to add or drop
            version = ann.table_version if delta is None else delta.version
            return self._prefiltered(route, q, k, filters, version)  # type: ignore[arg-type]
        pairs: list[tuple[float, str]] = []
        if allowed is None or len(allowed):
            extra = 0 if delta is None else len(delta.gone)
            want = k + extra
            scores, ids = ann.search(q, want, allowed, cross_modal=cross_modal)
            short = allowed is not None and int((ids[0] >= 0).sum()) < min(want, len(allowed))
            if short and ann.params.kind != "flat":
                scores, ids = _every_list(ann, q, want, allowed, cross_modal)  # type: ignore[arg-type]
            pairs = [(float(s), ann.paths[i]) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
            result.index_kind = ann.params.kind
            result.engine = "faiss-cpu" if allowed is not None and ann.engine != ENGINE else ann.engine
        if delta is not None:
            pairs = [(s, p) for s, p in pairs if p not in delta.gone]
            paths, vectors = delta.paths, delta.vectors
            keep = self._rows.positions(route.target, paths, delta.version, filters)
            if keep is not None:
                paths, vectors = [paths[i] for i in keep], vectors[keep]
            pairs = sorted(pairs + _top(paths, vectors, q, k), key=lambda sp: -sp[0])
            result.index_kind = f"{ann.params.kind}+{len(delta.paths)} new"
        return pairs[:k]

    def _index(self, route: Route, version: int | None = None) -> LoadedAnn | None:
        """The FAISS index of the route (None when it has none). One behind its table (an index run under
        way, or killed) still answers, with the rows added since searched exactly beside it."""
        name = ann_name(route.target, route.column)
        if name not in self._ann:
            with self._load_lock:
                if name not in self._ann:
                    device = self.index.models.device  # --device cpu keeps FAISS off the GPU too
                    use_gpu = device is None or device.startswith("cuda")
                    # where no GPU will take it, a flat build is searched in numpy (store/exact.py)
                    numpy_flat = not (use_gpu and torch_search.nvidia_driver())
                    self._ann[name] = self.index.ann(name, use_gpu=use_gpu, numpy_flat=numpy_flat)
        ann = self._ann[name]
        if version is None:
            version = self.store.version(route.target)
        if ann is not None and ann.table_version != version and name not in self._warned:
            self._warned.add(name)
            log.warning(
                "FAISS index %s is older than its table (an index run under way, or interrupted): rows added "
                "since are searched exactly beside it; `avsearch index` rebuilds it",
                name,
            )
        return ann

    def _exact(self, route: Route, q: np.ndarray, k: int, filters: SearchFilters | None) -> list[tuple[float, str]]:
        paths, vectors, version = self.store.vectors(route.target, route.column)
        allowed = self._rows.positions(route.target, paths, version, filters)
        if allowed is not None:
            paths, vectors = [paths[i] for i in allowed], vectors[allowed]
        return _top(paths, vectors, q, k)

    def _prefiltered(
        self, route: Route, q: np.ndarray, k: int, filters: SearchFilters, version: int
    ) -> list[tuple[float, str]]:
        """Pre-filtering: the vectors of the few rows passing `where`, read from the table, scored exactly."""
        predicate = filters.predicate(route.target, self.store.columns(route.target)) or "true"
        paths, vectors = self.store.filtered_vectors(route.target, route.column, predicate, version)
        if filters.path_glob is not None:
            keep = glob_positions(paths, filters.path_glob)
            paths, vectors = [paths[i] for i in keep], vectors[keep]
        return _top(paths, vectors, q, k)


def _top(paths: list[str], vectors: np.ndarray, q: np.ndarray, k: int) -> list[tuple[float, str]]:
    """Exact top-k of q (1, d) over vectors (N, d): (score, path), best first, ties in row order."""
    scores = vectors @ q[0]
    top = np.argsort(-scores, kind="stable")[:k]
    return [(float(scores[i]), paths[i]) for i in top]


def _every_list(
    ann: LoadedAnn, q: np.ndarray, k: int, allowed: np.ndarray, cross_modal: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """An IVF search with a selector whose probed lists held fewer than k passing rows, again over every
    list, so it returns min(k, passing rows) results."""
    sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, np.int64))
    params = every_list_parameters(ann.params, sel)
    q = np.ascontiguousarray(q, np.float32)
    return ann.index_search(q, max(1, min(k, len(ann.paths))), params, cross_modal)
