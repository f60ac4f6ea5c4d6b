"""Which runtime answers each query tower in the server (avsearch/serve/towers.py): the towers listed go
to ONNX Runtime, exported from their torch load when there is no export yet; the others stay on torch.
The registry and the export are replaced by recorders here (the real export is tested in
tests/encoders/test_onnx_towers.py); what is checked is the loader's choice and order of steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsearch.encoders import onnx_towers, registry
from avsearch.errors import ConfigError
from avsearch.serve.config import SearchLimits
from avsearch.serve.towers import serve_loader

CLIP = "clip-vit-b-32-openai"


class Recorder:
    """Stands in for the registry and the exporter: torch loads, exports and ONNX loads, in order."""

    def __init__(self, exported: set[str]) -> None:
        self.exported, self.steps = exported, []

    def load_encoder(self, name: str, towers: tuple[str, ...], weights_dir: object, device: object) -> str:
        self.steps.append(("torch", towers[0]))
        return f"torch {towers[0]}"

    def export_after_load(self, encoder: str, spec: object, towers: tuple[str, ...], weights_dir: object) -> None:
        self.steps.append(("export", towers[0]))
        self.exported.add(towers[0])

    def load_onnx_encoder(self, spec: object, towers: tuple[str, ...], weights_dir: object, device: object):  # noqa: ANN201
        return f"onnx {towers[0]}" if towers[0] in self.exported and device == "cpu" else None

    def clear_cache(self) -> None:
        self.steps.append(("dropped torch copies", ""))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder(set())
    monkeypatch.setenv(onnx_towers.ENV, "1")
    for name in ("load_encoder", "clear_cache"):
        monkeypatch.setattr(registry, name, getattr(rec, name))
    for name in ("export_after_load", "load_onnx_encoder"):
        monkeypatch.setattr(onnx_towers, name, getattr(rec, name))
    return rec


def test_listed_towers_go_to_onnx_runtime_and_the_others_stay_on_torch(recorder: Recorder) -> None:
    load = serve_loader(Path("/weights"), "cpu", [f"{CLIP}:image"])
    assert load(CLIP, ("image",)) == "onnx image"  # no export yet: torch once, export, then the export
    assert recorder.steps == [("torch", "image"), ("export", "image"), ("dropped torch copies", "")]
    recorder.steps.clear()
    assert load(CLIP, ("image",)) == "onnx image"  # exported: straight from it
    assert load(CLIP, ("text",)) == "torch text"  # not listed
    assert recorder.steps == [("torch", "text")]


def test_a_tower_that_cannot_be_exported_stays_on_torch(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_towers, "export_after_load", lambda *a: recorder.steps.append(("export failed", "")))
    load = serve_loader(None, "cpu", [f"{CLIP}:image"])
    assert load(CLIP, ("image",)) == "torch image"
    assert recorder.steps == [("torch", "image"), ("export failed", "")]  # the torch copy is kept
    recorder.steps.clear()
    assert serve_loader(None, "cuda", [f"{CLIP}:image"])(CLIP, ("image",)) == "torch image"  # GPU: torch
    monkeypatch.setenv(onnx_towers.ENV, "0")
    assert serve_loader(None, "cpu", [f"{CLIP}:image"])(CLIP, ("image",)) == "torch image"  # turned off
    assert recorder.steps == [("torch", "image")] * 2  # no export tried


def test_onnx_towers_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match="expected '<encoder>:<tower>'"):
        SearchLimits(onnx_towers=("clip-vit-b-32-openai",))
