"""Every weights file that carries code gets the same one-line refusal naming it, and no code runs:
CLIP, CLAP, ULIP-2 and released-bridge files, in torch's zip, legacy and plain-pickle forms, loaded
directly and met by `avsearch index`."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.errors import IncompatibleError

TAIL = "avsearch reads weights files without running code from them"
MARK = f"refused: it holds a posix.system object; {TAIL}"


class _Evil:
    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def __reduce__(self):  # unpickling this would create the flag file
        return (os.system, (f"touch {self.flag}",))


def _write(path: Path, form: str, flag: Path) -> Path:
    payload = {"state_dict": {"w": _Evil(flag)}}
    if form == "zip":
        torch.save(payload, path)
    elif form == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload))
    return path


FORMS = ("zip", "legacy", "pickle")


@pytest.mark.parametrize("form", FORMS)
def test_every_loader_refuses_in_one_line(tmp_path, form) -> None:
    from avsearch.bridge.io import import_released
    from avsearch.encoders.clap_model import load_checkpoint_state
    from avsearch.encoders.clip import _build_model
    from avsearch.encoders.registry import get_spec
    from avsearch.encoders.ulip_checkpoint import read_state_dict

    flag = tmp_path / "code-ran"
    loaders = {
        "ViT-B-32.pt": lambda p: _build_model(get_spec("clip-vit-b-32-openai"), p, torch.device("cpu")),
        "630k-fusion-best.pt": load_checkpoint_state,
        "pointbert_ULIP-2.pt": read_state_dict,
        "clap_clip.pt": import_released,
    }
    for name, load in loaders.items():
        path = _write(tmp_path / name, form, flag)
        with pytest.raises(IncompatibleError) as caught:
            load(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: refused: it holds ") and TAIL in message, message
        if form != "pickle":  # torch names the object it met in its own formats
            assert message.startswith(f"{path}: {MARK}"), message
        assert "\n" not in message and "weights_only" not in message
    assert not flag.exists()


def test_index_meets_a_refused_clip_file_in_one_line(tmp_path, av_weights_dir) -> None:
    from tests.search.conftest import make_bridge
    from tests.search.media_factory import write_image

    bridge_file = make_bridge(tmp_path / "av.safetensors")
    weights = tmp_path / "weights"
    shutil.copytree(av_weights_dir, weights)
    flag = tmp_path / "code-ran"
    _write(weights / "ViT-B-32.pt", "zip", flag)
    write_image(tmp_path / "media" / "a.png", seed=0)
    args = ["index", str(tmp_path / "media"), "--index-dir", str(tmp_path / "index"), "--bridge", str(bridge_file)]
    result = CliRunner().invoke(app, [*args, "--weights-dir", str(weights), "-q"])
    assert result.exit_code == 1 and result.stderr.strip() == f"avsearch: error: {weights / 'ViT-B-32.pt'}: {MARK}"
    assert not flag.exists()
