import pickle

import numpy as np
import pytest
import torch

from avsearch.bridge.fast import read_bridge_meta
from avsearch.bridge.heads import HeadSpec, build_head
from avsearch.bridge.io import import_released, load_bridge, save_bridge
from avsearch.bridge.model import Bridge, BridgeMeta, Side
from avsearch.errors import ConfigError, IncompatibleError, InputError

AV_SIDES = (
    Side("clip", "clip-vit-b-32-openai", 512, "image"),
    Side("clap", "clap-630k-fusion", 512, "audio"),
)


def _bridge(kind: str = "mlp") -> Bridge:
    torch.manual_seed(0)
    b = Bridge(BridgeMeta("t", "text", AV_SIDES, HeadSpec(kind=kind)))
    # Non-trivial BatchNorm statistics (each kind its own), so a save/load that dropped them would show.
    for name, buffer in b.named_buffers():
        if "running_mean" in name:
            buffer.uniform_(-0.1, 0.1)
        elif "running_var" in name:
            buffer.uniform_(0.5, 1.5)
    return b.eval()


@pytest.mark.parametrize(
    ("kind", "n_params", "final_relu"),
    # Two table-6 heads hold 2 x 1,053,184 = 2.1M parameters: the paper's table 1 "Tr. Param".
    [
        ("mlp", 512 * 1024 + 1024 + 2 * 1024 + 1024 * 512 + 512 + 2 * 512, True),
        ("released_av", None, False),
        ("released_3d", 512 * 512 + 512 + 512 * 2, True),
    ],
)
def test_head_kinds(kind, n_params, final_relu):
    head = build_head(HeadSpec(kind=kind)).eval()
    out = head(torch.randn(16, 512), "memory")
    assert out.shape == (16, 512)
    assert bool((out >= 0).all()) == final_relu
    if n_params is not None:
        assert sum(p.numel() for p in head.parameters()) == n_params


def test_unknown_head_kind_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="mlp, released_av, released_3d"):
        build_head(HeadSpec(kind="transformer"))


def test_project_is_normalised_and_rejects_wrong_shapes():
    b = _bridge()
    x = np.random.default_rng(0).standard_normal((10, 512)).astype(np.float32)
    y = b.project("clap", x, modality="audio")
    assert y.shape == (10, 512) and y.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    with pytest.raises(IncompatibleError, match=r"\(N, 512\)"):
        b.project("clap", x[:, :100], modality="audio")
    with pytest.raises(IncompatibleError, match="not 'ulip'"):
        b.project("ulip", x, modality="audio")
    with pytest.raises(IncompatibleError, match="projects text or audio through its clap side, not 'image'"):
        b.project("clap", x, modality="image")


def test_each_input_kind_uses_its_own_statistics_and_text_and_media_differ():
    b = _bridge()
    x = np.random.default_rng(0).standard_normal((10, 512)).astype(np.float32)
    text, audio = b.project("clap", x, modality="text"), b.project("clap", x, modality="audio")
    assert not np.allclose(text, audio, atol=1e-3)  # same rows, other statistics
    head = b.heads["clap"]
    with torch.no_grad():
        for layer in head.modules():
            if hasattr(layer, "running_mean_overlap"):
                layer.running_mean_overlap.copy_(layer.running_mean_memory)
                layer.running_var_overlap.copy_(layer.running_var_memory)
    np.testing.assert_allclose(b.project("clap", x, modality="text"), audio, atol=1e-6)


def test_save_load_roundtrip_keeps_weights_stats_and_metadata(tmp_path):
    b = _bridge("released_av")
    b.meta.hyper["lr"] = 0.5
    fp = save_bridge(b, tmp_path / "b.safetensors")
    loaded = load_bridge(tmp_path / "b.safetensors")
    assert loaded.fingerprint == fp and len(fp) == 16
    assert loaded.meta.to_dict() | {"package_version": ""} == b.meta.to_dict() | {"package_version": ""}
    x = np.random.default_rng(1).standard_normal((5, 512)).astype(np.float32)
    np.testing.assert_array_equal(loaded.project("clip", x, modality="image"), b.project("clip", x, modality="image"))
    meta, fp2 = read_bridge_meta(tmp_path / "b.safetensors")
    assert fp2 == fp and meta.head.kind == "released_av"


def test_fingerprint_changes_with_the_weights(tmp_path):
    b = _bridge()
    fp1 = save_bridge(b, tmp_path / "a.safetensors")
    with torch.no_grad():
        b.heads["clip"].net1[0].weight[0, 0] += 1
    assert save_bridge(b, tmp_path / "b.safetensors") != fp1


def test_corrupt_and_foreign_files_give_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_bridge(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="junk.safetensors: not a safetensors bridge"):
        load_bridge(junk)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(InputError, match="no avsearch bridge metadata"):
        load_bridge(tmp_path / "plain.safetensors")


def test_tampered_weights_fail_the_fingerprint_check(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = tmp_path / "b.safetensors"
    save_bridge(_bridge(), path)
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    state["heads.clip.net1.0.bias"] += 1
    save_file(state, str(path), metadata=header)
    with pytest.raises(InputError, match="fingerprint mismatch"):
        load_bridge(path)


def _released_state(kind: str) -> dict[str, torch.Tensor]:
    """A state dict with exactly the released key layout (random values; built by the test)."""
    torch.manual_seed(1)
    state = {}
    for head in ("Head_A", "Head_B"):
        layers = {"net1": (512, 1024), "net2": (1024, 512)} if kind == "clap_clip" else {"net": (512, 512)}
        for name, (i, o) in layers.items():
            state[f"{head}.{name}.0.weight"] = torch.randn(o, i) * 0.05
            state[f"{head}.{name}.0.bias"] = torch.randn(o) * 0.05
            state[f"{head}.{name}.1.weight"] = torch.rand(o) + 0.5
            state[f"{head}.{name}.1.bias"] = torch.randn(o) * 0.05
            state[f"{head}.{name}.1.running_mean"] = torch.randn(o) * 0.01
            state[f"{head}.{name}.1.running_var"] = torch.rand(o) * 0.02 + 0.01
            state[f"{head}.{name}.1.num_batches_tracked"] = torch.tensor(3080)
    return state


@pytest.mark.parametrize(
    ("kind", "spaces", "n_keys"), [("clap_clip", ("clip", "clap"), 28), ("ulip_clip", ("clip", "ulip"), 14)]
)
def test_released_checkpoints_import_strictly_and_roundtrip(tmp_path, kind, spaces, n_keys):
    state = _released_state(kind)
    assert len(state) == n_keys
    torch.save(state, tmp_path / f"{kind}.pt")
    bridge = import_released(tmp_path / f"{kind}.pt")
    assert set(bridge.meta.spaces) == set(spaces)
    assert bridge.meta.source == f"imported:{kind}.pt"
    # Head_A/Head_B roles: clap_clip has Head_A = CLAP; ulip_clip has Head_A = CLIP.
    clip_prefix = "Head_B" if kind == "clap_clip" else "Head_A"
    first = "net1" if kind == "clap_clip" else "net"
    assert torch.equal(bridge.heads["clip"].get_submodule(first)[0].weight, state[f"{clip_prefix}.{first}.0.weight"])
    # The released pipeline, both sides, against the independent float64 forward written from the
    # published head layout (no avsearch module in it; see tests/bridge/test_released_heads.py).
    from tests.bridge.test_released_heads import MODALITY, ROLES, reference_forward

    x = 3 * torch.randn(4, 512).numpy()
    for space, head in ROLES[kind].items():
        want = reference_forward(state, kind, head, x)
        np.testing.assert_allclose(bridge.project(space, x, modality=MODALITY[kind][space]), want, atol=2e-5)
    save_bridge(bridge, tmp_path / "converted.safetensors")
    again = load_bridge(tmp_path / "converted.safetensors")
    modality = MODALITY[kind][spaces[1]]
    np.testing.assert_array_equal(
        again.project(spaces[1], x, modality=modality), bridge.project(spaces[1], x, modality=modality)
    )


def test_released_import_is_strict(tmp_path):
    state = _released_state("clap_clip")
    del state["Head_A.net2.1.running_var"]
    torch.save(state, tmp_path / "clap_clip.pt")
    with pytest.raises(InputError, match="running_var"):
        import_released(tmp_path / "clap_clip.pt")
    state = _released_state("ulip_clip") | {"Head_C.net.0.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "ulip_clip.pt")
    with pytest.raises(InputError, match="unexpected key 'Head_C"):
        import_released(tmp_path / "ulip_clip.pt")
    with pytest.raises(InputError, match="valid kinds: clap_clip, ulip_clip"):
        import_released(tmp_path / "ulip_clip.pt", kind="other")


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_released_import_never_unpickles_arbitrary_objects(tmp_path, capsys):
    path = tmp_path / "clap_clip.pt"
    torch.save({"Head_A.net1.0.weight": _Evil()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(IncompatibleError, match="refused: it holds .*without running code from them"):
        import_released(path)
    assert "this must never run" not in capsys.readouterr().out


def test_open_bridge_reads_both_formats_and_infers_the_released_kind(tmp_path):
    from avsearch.bridge.io import open_bridge

    torch.save(_released_state("clap_clip"), tmp_path / "renamed.pt")
    released = open_bridge(tmp_path / "renamed.pt")
    assert released.meta.head.kind == "released_av" and set(released.meta.spaces) == {"clip", "clap"}
    meta, fp = read_bridge_meta(tmp_path / "renamed.pt")
    assert fp == released.fingerprint and meta.source == "imported:renamed.pt"
    save_bridge(released, tmp_path / "av.safetensors")
    assert open_bridge(tmp_path / "av.safetensors").fingerprint == released.fingerprint
