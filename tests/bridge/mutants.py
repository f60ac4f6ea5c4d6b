"""Deliberately broken C-MCR trainers, reached through test-only patches (never product flags).

Each entry returns (config, data) for one broken variant and patches what it breaks with pytest's
monkeypatch; the quality check must reject every one of them while the correct trainer passes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from avsearch.bridge import train as train_module
from avsearch.bridge.config import TrainConfig, with_overrides
from avsearch.bridge.data import BridgeData

Mutant = Callable[[TrainConfig, BridgeData, pytest.MonkeyPatch], tuple[TrainConfig, BridgeData]]


def _patch_intra_sign(cfg: TrainConfig, data: BridgeData, mp: pytest.MonkeyPatch) -> tuple[TrainConfig, BridgeData]:
    original = train_module.intra_alignment
    mp.setattr(train_module, "intra_alignment", lambda a, b: -original(a, b))
    return cfg, data


def _one_way(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    return F.cross_entropy(a @ b.T / tau, torch.arange(a.shape[0], device=a.device))


def _patch_one_way(cfg: TrainConfig, data: BridgeData, mp: pytest.MonkeyPatch) -> tuple[TrainConfig, BridgeData]:
    mp.setattr(train_module, "info_nce", _one_way)
    return cfg, data


def _overrides(**kw: object) -> Mutant:
    def mutate(cfg: TrainConfig, data: BridgeData, mp: pytest.MonkeyPatch) -> tuple[TrainConfig, BridgeData]:
        return with_overrides(cfg, **kw), data

    return mutate


def _swap_memories(cfg: TrainConfig, data: BridgeData, mp: pytest.MonkeyPatch) -> tuple[TrainConfig, BridgeData]:
    return cfg, BridgeData(data.overlap, (data.memory[1], data.memory[0]), data.fingerprint)


MUTANTS: dict[str, Mutant] = {
    "intra loss sign flipped": _patch_intra_sign,
    "one-directional InfoNCE": _patch_one_way,
    "tau2 = tau3 = 1": _overrides(tau2=1.0, tau3=1.0),
    "tau1 = 1": _overrides(tau1=1.0),
    "no noise": _overrides(noise=False),
    "no noise, no re-normalisation": _overrides(noise=False, renorm=False),
    "memories swapped between the spaces": _swap_memories,
    "L_avc only": _overrides(ttc=False, intra=("none",)),
    "L_ttc only": _overrides(avc=False, intra=("none",)),
    "random consistency": _overrides(mode="random"),
    "no re-normalisation": _overrides(renorm=False),
}
