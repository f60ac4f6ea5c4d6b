"""The training checkpoint: everything a run needs to resume exactly (nanoGPT's `init_from='resume'`).

Written atomically after every epoch with torch.save and read back with weights_only=True: it holds
only tensors, numbers and strings (the config and history as JSON), so nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from avsearch.atomic import atomic_path
from avsearch.bridge.config import TrainConfig
from avsearch.errors import InputError

FORMAT = "avsearch.train-checkpoint/1"


@dataclass
class TrainCheckpoint:
    config: dict[str, Any]  # TrainConfig.to_dict() of the run
    data_fingerprint: str  # BridgeData.fingerprint of the training arrays
    epoch: int  # epochs completed
    step: int  # optimiser steps taken (the cosine schedule is a function of it)
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    order_rng: torch.Tensor  # state of the generator that shuffles each epoch
    noise_rng: torch.Tensor  # state of the generator of the completion noise
    history: list[dict[str, float]]
    train_seconds: float


def save_checkpoint(path: str | Path, state: TrainCheckpoint) -> None:
    """Write `state` to `path` atomically (a crash mid-write leaves the previous checkpoint intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": json.dumps(state.config, sort_keys=True),
        "data_fingerprint": state.data_fingerprint,
        "epoch": state.epoch,
        "step": state.step,
        "model": {k: v.detach().cpu() for k, v in state.model.items()},
        "optimizer": state.optimizer,
        "order_rng": state.order_rng.cpu(),
        "noise_rng": state.noise_rng.cpu(),
        "history": json.dumps(state.history),
        "train_seconds": state.train_seconds,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, config: TrainConfig, data_fingerprint: str) -> TrainCheckpoint:
    """Read a checkpoint written for `config` on the data with `data_fingerprint`; anything else is refused."""
    path = Path(path)
    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle and forbidden-global errors all mean "not our checkpoint"
        raise InputError(f"{path}: not a readable training checkpoint ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise InputError(f"{path}: not an avsearch training checkpoint")
    saved = json.loads(raw["config"])
    current = json.loads(json.dumps(config.to_dict(), sort_keys=True))  # same JSON round trip as saved
    if saved != current:
        changed = sorted(_diff(saved, current))
        raise InputError(
            f"{path}: was written with another config ({', '.join(changed[:5])} differ); "
            "train with the same settings or remove the checkpoint"
        )
    if raw["data_fingerprint"] != data_fingerprint:
        raise InputError(f"{path}: was written for other training arrays; remove it to start afresh")
    return TrainCheckpoint(
        config=saved,
        data_fingerprint=raw["data_fingerprint"],
        epoch=int(raw["epoch"]),
        step=int(raw["step"]),
        model=raw["model"],
        optimizer=raw["optimizer"],
        order_rng=raw["order_rng"],
        noise_rng=raw["noise_rng"],
        history=json.loads(raw["history"]),
        train_seconds=float(raw["train_seconds"]),
    )


def _diff(a: Any, b: Any, where: str = "") -> list[str]:
    """Dotted names of the leaves that differ between two JSON-like values."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{where}.{k}".lstrip("."))]
    return [] if a == b else [where or "value"]
