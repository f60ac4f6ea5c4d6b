"""Query routing over an index's manifest (no models): which space each query form meets its target in."""

from __future__ import annotations

import pytest

from avsearch.errors import InputError
from avsearch.search.planner import plan_routes
from avsearch.store.manifest import BridgeRef, Manifest, ModalityEntry
from avsearch.store.table_schema import NATIVE

CLIP, CLAP, ULIP = "clip-vit-b-32-openai", "clap-630k-fusion", "ulip2-pointbert"


def _manifest(with_3d: bool) -> Manifest:
    bridges = {"audio_visual": BridgeRef("audio_visual", "a", "/av", ["clip", "clap"], 512)}
    modalities = {
        "audio": ModalityEntry(CLAP, "clap", 512, text=True),
        "image": ModalityEntry(CLIP, "clip", 512, text=True),
    }
    if with_3d:
        bridges["pointcloud_text"] = BridgeRef("pointcloud_text", "p", "/3d", ["clip", "ulip"], 512)
        modalities["pointcloud"] = ModalityEntry(ULIP, "ulip", 512, text=False)
    return Manifest(bridges=bridges, modalities=modalities)


def _table(query: str, target: str, m: Manifest) -> list[tuple[str, str, str, str | None]]:
    return [(r.target, r.column, r.encoder, r.bridge) for r in plan_routes(query, target, m)]


def test_av_routes() -> None:
    m = _manifest(with_3d=False)
    assert _table("audio", "image", m) == [("image", "proj_audio_visual", CLAP, "audio_visual")]
    assert _table("image", "audio", m) == [("audio", "proj_audio_visual", CLIP, "audio_visual")]
    assert _table("text", "image", m) == [("image", NATIVE, CLIP, None)]  # CLIP's own space
    assert _table("text", "audio", m) == [("audio", NATIVE, CLAP, None)]  # CLAP's own space
    assert _table("audio", "audio", m) == [("audio", NATIVE, CLAP, None)]
    assert [t for t, *_ in _table("image", "all", m)] == ["image", "audio"]  # own modality first
    with pytest.raises(InputError, match="unknown target"):
        plan_routes("text", "video", m)


def test_3d_routes_and_unreachable_pairs() -> None:
    m = _manifest(with_3d=True)
    assert _table("text", "pointcloud", m) == [("pointcloud", "proj_pointcloud_text", CLIP, "pointcloud_text")]
    assert _table("pointcloud", "image", m) == [("image", "proj_pointcloud_text", ULIP, "pointcloud_text")]
    assert _table("image", "pointcloud", m) == [("pointcloud", "proj_pointcloud_text", CLIP, "pointcloud_text")]
    assert [t for t, *_ in _table("audio", "all", m)] == ["audio", "image"]  # no bridge joins audio and 3D
    with pytest.raises(InputError, match="no bridge"):
        plan_routes("audio", "pointcloud", m)
