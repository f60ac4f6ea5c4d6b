"""CLAP checkpoints are read weights-only: numpy scalars pass, arbitrary objects are refused."""

import numpy as np
import pytest
import torch

from avsearch.encoders.clap_model import TRUST_ENV, load_checkpoint_state
from avsearch.errors import IncompatibleError


class _Evil:
    def __reduce__(self):
        return (print, ("checkpoint code ran",))


def test_numpy_scalars_in_a_training_checkpoint_load(tmp_path):
    path = tmp_path / "630k-fusion-best.pt"
    torch.save({"state_dict": {"module.w": torch.ones(2)}, "epoch": np.int64(45), "loss": np.float32(0.1)}, path)
    state = load_checkpoint_state(path)
    assert list(state) == ["w"] and torch.equal(state["w"], torch.ones(2))


def test_arbitrary_objects_are_refused_unless_the_user_opts_in(tmp_path, capsys, monkeypatch):
    path = tmp_path / "630k-fusion-best.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "extra": _Evil()}, path)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(IncompatibleError, match=rf"refused: .* \(for a file you trust: {TRUST_ENV}=1\)"):
        load_checkpoint_state(path)
    assert "checkpoint code ran" not in capsys.readouterr().out
    monkeypatch.setenv(TRUST_ENV, "1")
    assert torch.equal(load_checkpoint_state(path)["w"], torch.ones(2))
