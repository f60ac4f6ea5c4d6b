"""The search engine: open an index, embed a query along its route, search, and describe the hits."""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from avsearch.errors import DecodeError, InputError
from avsearch.media.detect import detect
from avsearch.media.failures import NOT_MEDIA
from avsearch.modalities import TEXT
from avsearch.search.planner import ALL, Route, plan_routes
from avsearch.search.results import Hit, ResultSet
from avsearch.store.ann_files import LoadedAnn, ann_name
from avsearch.store.index import Index
from avsearch.store.tables import path_key
from avsearch.timings import timed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchFilters:
    """Optional metadata filters, applied inside the FAISS search (not by over-fetching)."""

    path_glob: str | None = None  # fnmatch pattern on the full path, e.g. "*/birds/*"


class SearchEngine:
    """Queries against one `Index`. Models and FAISS indexes load on first use and stay loaded."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.manifest = index.manifest
        self.store = index.tables
        self.models = index.models
        self._ann: dict[str, LoadedAnn | None] = {}
        self._native: dict[tuple[str, str], tuple[tuple[str | None, Path | None], np.ndarray]] = {}

    def search_text(
        self, text: str, target: str = ALL, k: int = 10, filters: SearchFilters | None = None
    ) -> list[ResultSet]:
        """Text against each target, in the target's own space when its encoder reads text."""
        if not text.strip():
            raise InputError("the query text is empty")
        return [
            self._run(r, text, TEXT, self._embed(r, text=text), k, filters)
            for r in plan_routes(TEXT, target, self.manifest)
        ]

    def search_file(
        self,
        path: str | Path,
        modality: str | None = None,
        target: str = ALL,
        k: int = 10,
        filters: SearchFilters | None = None,
    ) -> list[ResultSet]:
        """A media file against each target: natively for its own modality, via a bridge otherwise."""
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
        routes = plan_routes(modality, target, self.manifest)
        return [self._run(r, str(path), modality, self._embed(r, path=path), k, filters) for r in routes]

    def search_item(
        self, item: str, target: str = ALL, k: int = 10, filters: SearchFilters | None = None
    ) -> list[ResultSet]:
        """More like an indexed item (its path, or its id as results carry it): its stored vectors are the
        query, so no model loads.

        The item itself is left out of its own modality's results.
        """
        for modality in self.store.modalities():
            records, stored = self.store.fetch(modality, [item])
            if records:
                item = records[0].path
                break
        else:
            raise InputError(f"{item}: no such item in this index (give a path or id as `avsearch query` prints it)")
        results = []
        for route in plan_routes(modality, target, self.manifest):
            own = route.target == modality
            result = self._run(route, item, modality, stored[route.column][:1], k + own, filters)
            if own:
                result.hits = [h for h in result.hits if h.path != item][:k]
                result.hits = [replace(h, rank=r) for r, h in enumerate(result.hits, start=1)]
            results.append(result)
        return results

    @timed("embed query")
    def _embed(self, route: Route, text: str | None = None, path: Path | None = None) -> np.ndarray:
        """The query vector (1, d) in the route's space; one encoder pass per query, reused by routes."""
        key = (route.encoder, route.tower)
        if key not in self._native or self._native[key][0] != (text, path):
            enc = self.models.encoder(route.encoder, route.tower)
            vec = enc.encode_text([text]) if text is not None else enc.encode_files(route.tower, [path])
            self._native[key] = ((text, path), vec)
        q = self._native[key][1]
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
        ann = self._index(route)
        if ann is not None:
            allowed = _allowed(ann.paths, filters)
            if allowed is not None and len(allowed) == 0:
                return result
            scores, ids = ann.search(q, k, allowed)
            pairs = [(float(s), ann.paths[i]) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
            result.index_kind = ann.params.kind
            result.engine = "faiss-cpu" if allowed is not None else ann.engine
        else:
            pairs = self._exact(route, q, k, filters)
        meta = self.store.lookup(route.target, [p for _, p in pairs])
        result.hits = [
            Hit(
                rank,
                p,
                route.target,
                s,
                getattr(meta.get(p), "size", None),
                getattr(meta.get(p), "mtime_ns", None),
                path_key(p),
            )
            for rank, (s, p) in enumerate(pairs, start=1)
        ]
        return result

    def _index(self, route: Route) -> LoadedAnn | None:
        """The FAISS index of the route, or None when missing or behind its table (a killed run)."""
        name = ann_name(route.target, route.column)
        if name not in self._ann:
            device = self.index.models.device  # --device cpu keeps FAISS off the GPU too
            self._ann[name] = self.index.ann(name, use_gpu=device is None or device.startswith("cuda"))
        ann = self._ann[name]
        if ann is not None and ann.table_version != self.store.version(route.target):
            log.warning(
                "FAISS index %s is older than its table (interrupted run?): searching exactly; "
                "run `avsearch index` again to rebuild it",
                name,
            )
            return None
        return ann

    def _exact(self, route: Route, q: np.ndarray, k: int, filters: SearchFilters | None) -> list[tuple[float, str]]:
        paths, vectors, _ = self.store.vectors(route.target, route.column)
        allowed = _allowed(paths, filters)
        scores = vectors @ q[0]
        if allowed is not None:
            mask = np.full(len(paths), -np.inf, dtype=np.float32)
            mask[allowed] = 0.0
            scores = scores + mask
        top = np.argsort(-scores, kind="stable")[:k]
        return [(float(scores[i]), paths[i]) for i in top if np.isfinite(scores[i])]


def _allowed(paths: list[str], filters: SearchFilters | None) -> np.ndarray | None:
    """Row ids passing the filters (None = no filter)."""
    if filters is None or filters.path_glob is None:
        return None
    return np.array([i for i, p in enumerate(paths) if fnmatch.fnmatch(p, filters.path_glob)], dtype=np.int64)
