"""Strict loading of pointbert_ULIP-2.pt with ULIP's layout: every entry accounted for, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avsearch.encoders.ulip import load_ulip_encoder
from avsearch.encoders.ulip_checkpoint import (
    ULIP_CHECKPOINT,
    check_layout,
    expected_layout,
    load_point_tower,
    read_state_dict,
)
from avsearch.errors import IncompatibleError, WeightsMissingError

from .conftest import random_ulip_state, save_ulip_checkpoint


def test_layout_is_ulip_v1_pointbert() -> None:
    layout = expected_layout()
    assert len(layout) == 462
    prefixes = {p: sum(k.startswith(p) for k in layout) for p in ("visual.", "transformer.", "point_encoder.")}
    assert prefixes == {"visual.": 150, "transformer.": 144, "point_encoder.": 160}
    assert layout["pc_projection"] == (768, 512) and layout["image_projection"] == (768, 512)
    assert layout["point_encoder.encoder.first_conv.0.weight"] == (128, 3, 1)
    assert layout["point_encoder.blocks.blocks.11.attn.qkv.weight"] == (1152, 384)
    assert "point_encoder.blocks.blocks.0.attn.qkv.bias" not in layout  # Point-BERT: no qkv bias
    assert layout["logit_scale"] == ()


def test_file_round_trip_strips_module_prefix(ulip_weights_dir: Path) -> None:
    state = read_state_dict(ulip_weights_dir / ULIP_CHECKPOINT)
    check_layout(state, "x")  # no error
    assert not any(k.startswith("module.") for k in state)
    model = load_point_tower(state)
    torch.testing.assert_close(model.pc_projection, state["pc_projection"])
    torch.testing.assert_close(
        model.point_encoder.blocks.blocks[3].mlp.fc1.weight,
        state["point_encoder.blocks.blocks.3.mlp.fc1.weight"],
    )


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return random_ulip_state(dense_point_tower=False)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ("drop_point", "missing: point_encoder.blocks.blocks.5.attn.proj.bias"),
        ("drop_text", "missing: transformer.resblocks.0.ln_1.weight"),
        ("extra", "unexpected: point_encoder.cls_head_finetune.weight"),
        ("shape", "wrong shape: pc_projection (1280, 512) (expected (768, 512))"),
    ],
)
def test_layout_mismatch_is_named(state, change: str, needle: str) -> None:
    broken = dict(state)
    if change == "drop_point":
        del broken["point_encoder.blocks.blocks.5.attn.proj.bias"]
    elif change == "drop_text":
        del broken["transformer.resblocks.0.ln_1.weight"]
    elif change == "extra":
        broken["point_encoder.cls_head_finetune.weight"] = torch.zeros(40, 768)
    else:
        broken["pc_projection"] = torch.zeros(1280, 512)  # the ViT-bigG ULIP-2 variant
    with pytest.raises(IncompatibleError, match="not the ULIP-2 PointBERT") as info:
        check_layout(broken, "some.pt")
    assert needle in str(info.value)


def test_broken_file_fails_before_loading(tmp_path: Path, state) -> None:
    broken = dict(state)
    del broken["point_encoder.norm.bias"]
    save_ulip_checkpoint(broken, tmp_path)
    with pytest.raises(IncompatibleError, match="missing: point_encoder.norm.bias") as info:
        load_ulip_encoder(("pointcloud",), tmp_path, "cpu")
    assert str(tmp_path / ULIP_CHECKPOINT) in str(info.value)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / ULIP_CHECKPOINT).write_bytes(b"garbage")
    with pytest.raises(IncompatibleError, match="refused: it holds data that a weights-only load does not accept"):
        load_ulip_encoder(("pointcloud",), tmp_path, "cpu")
    torch.save({"state_dict": [1, 2]}, tmp_path / ULIP_CHECKPOINT)
    with pytest.raises(IncompatibleError, match="'state_dict' of tensors"):
        load_ulip_encoder(("pointcloud",), tmp_path, "cpu")


def test_arbitrary_pickles_are_refused(tmp_path: Path) -> None:
    # weights-only unpickling: only tensors, containers and argparse.Namespace are allowed.
    torch.save({"state_dict": {}, "args": Path("/etc")}, tmp_path / ULIP_CHECKPOINT)
    with pytest.raises(IncompatibleError, match="refused: it holds a pathlib.PosixPath object"):
        read_state_dict(tmp_path / ULIP_CHECKPOINT)


def test_missing_weights_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsMissingError, match=ULIP_CHECKPOINT):
        load_ulip_encoder(("pointcloud",), tmp_path / "empty", "cpu")
