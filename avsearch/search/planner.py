"""Query routes: which space a query and a target meet in, for each search backend asked for.

C-MCR backend (the index's tables named after their modality):
- text -> M: M's own encoder space when that encoder reads text (CLIP for images, CLAP for audio): no
  bridge, no accuracy lost; otherwise through a bridge from a space that reads text (text -> 3D: CLIP
  text through the 3D bridge, the paper's zero-shot route);
- M -> M: M's native space;
- M -> N (N != M): both through the bridge that connects their spaces (audio <-> image, image <-> 3D).

CAV-MAE backend (tables "cavmae_audio", "cavmae_image"): audio and image queries against audio and image,
all in CAV-MAE's one audio-visual space, no bridge; no text (CAV-MAE has no text tower).
"""

from __future__ import annotations

from dataclasses import dataclass

from avsearch.errors import InputError
from avsearch.modalities import BACKENDS, BOTH, CMCR, TEXT
from avsearch.store.manifest import Manifest, ModalityEntry
from avsearch.store.table_schema import NATIVE

ALL = "all"
TEXT_STAYS = "text queries use C-MCR: CAV-MAE has no text tower"


@dataclass(frozen=True)
class Route:
    target: str  # table searched: the target modality for C-MCR, e.g. "cavmae_image" for CAV-MAE
    column: str  # NATIVE or a bridge's projected column: which vectors (and FAISS index) of the target
    encoder: str  # encoder registry name that embeds the query
    tower: str  # which tower of it: TEXT or the query file's modality
    bridge: str | None  # bridge the query is projected through (None: native space)
    query_space: str  # the space the query embedding starts in
    space: str  # space name reported with the results: "clip", "clap", "cavmae" or "shared:<bridge>"
    backend: str = CMCR  # the search backend whose tables the route reads
    modality: str = ""  # the target's file modality when `target` is not named after it

    @property
    def target_modality(self) -> str:
        return self.modality or self.target


def _route(query_modality: str, target: str, entries: dict[str, ModalityEntry], m: Manifest) -> Route | None:
    """A C-MCR route (entries: the C-MCR tables, by modality)."""
    t = entries[target]
    if query_modality == TEXT:
        if t.text:
            return Route(target, NATIVE, t.encoder, TEXT, None, t.space, t.space)
        for ref in m.bridges_of(t.space):
            for e in entries.values():
                if e.text and e.space in ref.spaces and e.space != t.space:
                    return Route(target, ref.column, e.encoder, TEXT, ref.name, e.space, f"shared:{ref.name}")
        return None
    q = entries[query_modality]
    if query_modality == target:
        return Route(target, NATIVE, q.encoder, query_modality, None, q.space, q.space)
    for ref in m.bridges_of(q.space):
        if t.space in ref.spaces:
            return Route(target, ref.column, q.encoder, query_modality, ref.name, q.space, f"shared:{ref.name}")
    return None


def chosen_backends(backend: str | None, manifest: Manifest) -> tuple[str, ...]:
    """The backends a query runs on: "cmcr", "cavmae", "both" (every backend the index holds) or None
    (configs/backends.toml's default when the index holds it, else the index's first backend)."""
    from avsearch.embedding.models import load_backend_config

    have = manifest.backends()
    if backend is None:
        default = load_backend_config().default
        return (default,) if default in have or not have else (have[0],)
    if backend == BOTH:
        return tuple(have)
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)} or {BOTH}")
    if backend not in have:
        raise InputError(
            f"this index has no {backend} backend (it holds {', '.join(have)}): add it with "
            f"`avsearch index FOLDER --backend {backend}`"
        )
    return (backend,)


def backend_note(query_modality: str, backend: str | None, manifest: Manifest) -> str | None:
    """One line for a `both` query that only some backends can answer (text: C-MCR only), else None."""
    chosen = chosen_backends(backend, manifest)
    if len(chosen) < 2:
        return None
    left_out = [b for b in chosen if b != CMCR and query_modality not in manifest.tables_of(b)]
    if not left_out:
        return None
    if query_modality == TEXT:
        return TEXT_STAYS + "; results are C-MCR's only"
    return f"{', '.join(left_out)} takes no {query_modality} queries; results are C-MCR's only"


def plan_routes(query_modality: str, target: str, manifest: Manifest, backend: str | None = CMCR) -> list[Route]:
    """Routes for a query of `query_modality` against `target` ("all": every modality a route reaches), on
    the backends `backend` names ("cmcr", "cavmae", "both"; None: the default): C-MCR's routes first."""
    chosen = chosen_backends(backend, manifest)
    routes: list[Route] = []
    for name in chosen:
        if name == CMCR:
            routes += _cmcr_routes(query_modality, target, manifest, alone=len(chosen) == 1)
        else:
            routes += _own_space_routes(name, query_modality, target, manifest, alone=len(chosen) == 1)
    if not routes:
        raise InputError(f"no backend of this index ({', '.join(chosen)}) answers {query_modality} -> {target}")
    return routes


def _targets(query_modality: str, target: str, known: list[str]) -> list[str]:
    # "all": the query's own modality first, then the others in index order
    return sorted(known, key=lambda x: x != query_modality) if target == ALL else [target]


def _cmcr_routes(query_modality: str, target: str, manifest: Manifest, alone: bool) -> list[Route]:
    entries = manifest.file_modalities()
    known = list(entries)
    every = sorted({manifest.kind(t) for t in manifest.modalities})
    if target != ALL and target not in known:
        if alone or target not in every:
            raise InputError(f"unknown target {target!r}; this index holds: {', '.join(known)} (or 'all')")
        return []
    if query_modality != TEXT and query_modality not in known:
        if alone:
            raise InputError(f"this index cannot take {query_modality} queries; it holds {', '.join(known)}")
        return []
    routes = [r for t in _targets(query_modality, target, known) if (r := _route(query_modality, t, entries, manifest))]
    if not routes and alone:
        raise InputError(
            f"no bridge in this index connects {query_modality} with {target}; bridges: {', '.join(manifest.bridges)}"
        )
    return routes


def _own_space_routes(backend: str, query_modality: str, target: str, manifest: Manifest, alone: bool) -> list[Route]:
    """Routes of a backend whose modalities share one space (CAV-MAE): every query is native."""
    tables = manifest.tables_of(backend)
    known = list(tables)
    if query_modality == TEXT:
        if alone:
            raise InputError(f"{TEXT_STAYS}: ask with --backend cmcr (or both)")
        return []
    if query_modality not in tables or (target != ALL and target not in tables):
        if alone:
            asked = query_modality if query_modality not in tables else target
            raise InputError(f"the {backend} backend holds {' and '.join(known)} only, not {asked}")
        return []
    q = manifest.modalities[tables[query_modality]]
    return [
        Route(tables[t], NATIVE, q.encoder, query_modality, None, q.space, q.space, backend, t)
        for t in _targets(query_modality, target, known)
    ]
