"""Query routes: which space a query and a target meet in.

- text -> M: M's own encoder space when that encoder reads text (CLIP for images, CLAP for audio): no
  bridge, no accuracy lost; otherwise through a bridge from a space that reads text (text -> 3D: CLIP
  text through the 3D bridge, the paper's zero-shot route);
- M -> M: M's native space;
- M -> N (N != M): both through the bridge that connects their spaces (audio <-> image, image <-> 3D).
"""

from __future__ import annotations

from dataclasses import dataclass

from avsearch.errors import InputError
from avsearch.modalities import TEXT
from avsearch.store.manifest import Manifest
from avsearch.store.tables import NATIVE

ALL = "all"


@dataclass(frozen=True)
class Route:
    target: str  # modality searched
    column: str  # NATIVE or a bridge's projected column: which vectors (and FAISS index) of the target
    encoder: str  # encoder registry name that embeds the query
    tower: str  # which tower of it: TEXT or the query file's modality
    bridge: str | None  # bridge the query is projected through (None: native space)
    query_space: str  # the space the query embedding starts in
    space: str  # space name reported with the results: "clip", "clap" or "shared:<bridge>"


def _route(query_modality: str, target: str, m: Manifest) -> Route | None:
    t = m.modalities[target]
    if query_modality == TEXT:
        if t.text:
            return Route(target, NATIVE, t.encoder, TEXT, None, t.space, t.space)
        for ref in m.bridges_of(t.space):
            for e in m.modalities.values():
                if e.text and e.space in ref.spaces and e.space != t.space:
                    return Route(target, ref.column, e.encoder, TEXT, ref.name, e.space, f"shared:{ref.name}")
        return None
    q = m.modalities[query_modality]
    if query_modality == target:
        return Route(target, NATIVE, q.encoder, query_modality, None, q.space, q.space)
    for ref in m.bridges_of(q.space):
        if t.space in ref.spaces:
            return Route(target, ref.column, q.encoder, query_modality, ref.name, q.space, f"shared:{ref.name}")
    return None


def plan_routes(query_modality: str, target: str, manifest: Manifest) -> list[Route]:
    """Routes for a query of `query_modality` against `target` ("all": every modality a route reaches)."""
    known = list(manifest.modalities)
    if target != ALL and target not in known:
        raise InputError(f"unknown target {target!r}; this index holds: {', '.join(known)} (or 'all')")
    if query_modality != TEXT and query_modality not in known:
        raise InputError(f"this index cannot take {query_modality} queries; it holds {', '.join(known)}")
    # "all": the query's own modality first, then the others in index order
    targets = sorted(known, key=lambda x: x != query_modality) if target == ALL else [target]
    routes = [r for t in targets if (r := _route(query_modality, t, manifest)) is not None]
    if not routes:
        raise InputError(
            f"no bridge in this index connects {query_modality} with {target}; bridges: {', '.join(manifest.bridges)}"
        )
    return routes
