"""Encoder registry: names, errors, lazy factories, one load per tower set."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsearch.encoders import registry
from avsearch.encoders.registry import get_spec, list_encoders, load_encoder
from avsearch.errors import ConfigError


def test_registered_names() -> None:
    assert {"clip-vit-b-32-openai", "clap-630k-fusion", "ulip2-pointbert"} <= set(list_encoders())
    assert get_spec("clap-630k-fusion").space == "clap"
    assert get_spec("clip-vit-b-32-openai").dim == 512


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="valid names: .*clap-630k-fusion.*clip-vit-b-32-openai"):
        load_encoder("clip-vit-h")


def test_wrong_modality() -> None:
    with pytest.raises(ConfigError, match="encodes audio, text, not image"):
        load_encoder("clap-630k-fusion", ["image"])


def test_factory_imported_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = registry.EncoderSpec("x", "s", ("image",), 4, "avsearch.no_such_module:load", ())
    monkeypatch.setitem(registry._specs(), "x", spec)
    with pytest.raises(ConfigError, match="encoder 'x' is not available"):
        load_encoder("x", device="cpu")


def test_loaded_once_per_tower_set(clip_weights_dir: Path) -> None:
    a = load_encoder("clip-vit-b-32-openai", ["text"], weights_dir=clip_weights_dir, device="cpu")
    b = load_encoder("clip-vit-b-32-openai", ("text",), weights_dir=clip_weights_dir, device="cpu")
    assert a is b and a.modalities == ("text",)
