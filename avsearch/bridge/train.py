"""Training loop for a C-MCR bridge (paper section 3.5), read top to bottom:

1. semantic consistency: pseudo embeddings of each side's memory modality, computed once (eq. 2);
2. per step: fresh semantic-completion noise on all four batches (eq. 3), projection by both heads
   (eq. 4), L = L_ttc + L_avc + lambda * L_intra (eq. 5-10);
3. AdamW with cosine learning-rate decay per step; everything seeded, so a run is reproducible.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from avsearch import __version__
from avsearch.bridge.config import TrainConfig
from avsearch.bridge.consistency import pseudo_embeddings
from avsearch.bridge.data import BridgeData, load_bridge_data
from avsearch.bridge.io import save_bridge
from avsearch.bridge.losses import info_nce, intra_alignment, semantic_completion
from avsearch.bridge.model import Bridge
from avsearch.device import pick_device

log = logging.getLogger(__name__)

RESIDENT_BYTES = 2 << 30  # training arrays up to this size are copied to the device once


@dataclass
class TrainResult:
    bridge: Bridge
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    samples_per_s: float = 0.0  # training throughput (overlap pairs per second), consistency excluded
    consistency_s: float = 0.0  # seconds spent on eq. 2


def cosine_lr(step: int, total_steps: int, base_lr: float, min_ratio: float = 0.0) -> float:
    """Cosine decay from base_lr at step 0 to base_lr * min_ratio at the last step."""
    progress = min(step / max(total_steps - 1, 1), 1.0)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def compute_pseudo(
    config: TrainConfig, data: BridgeData, device: torch.device, progress: bool
) -> tuple[np.ndarray, ...]:
    """Eq. 2 for both sides: each overlap row's pseudo embedding drawn from that side's memory."""
    c = config.consistency
    return tuple(
        pseudo_embeddings(
            data.overlap[i],
            data.memory[i],
            config.method.tau1,
            c.mode,
            c.backend,
            topk=c.topk,
            nprobe=c.nprobe,
            query_chunk=c.query_chunk,
            memory_chunk=c.memory_chunk,
            seed=config.optim.seed + i,
            device=device,
            progress=progress,
        )
        for i in range(2)
    )


class _Batches:
    """Row-aligned batches of the four training arrays, on the device."""

    def __init__(self, arrays: tuple[np.ndarray, ...], device: torch.device) -> None:
        self.device = device
        self.resident = sum(a.nbytes for a in arrays) <= RESIDENT_BYTES
        if self.resident:
            self.arrays: tuple[Any, ...] = tuple(torch.tensor(np.asarray(a, np.float32)).to(device) for a in arrays)
        else:
            self.arrays = arrays

    def get(self, idx: torch.Tensor) -> list[torch.Tensor]:
        if self.resident:
            idx = idx.to(self.device)
            return [a[idx] for a in self.arrays]
        rows = np.sort(idx.numpy())  # sorted reads are much faster on memory-mapped arrays
        return [torch.from_numpy(np.asarray(a[rows], np.float32)).to(self.device) for a in self.arrays]


def train_bridge(
    config: TrainConfig,
    data: BridgeData,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Fit the two projector heads of `config` on `data` and return the trained bridge (eval mode)."""
    dev = pick_device(str(device)) if device is not None else pick_device()
    opt_cfg, method, abl = config.optim, config.method, config.ablation
    torch.manual_seed(opt_cfg.seed)
    spaces = [s.space for s in config.sides]

    # 1. Semantic consistency (training-free, so computed once before the loop).
    t0 = time.perf_counter()
    pseudo = compute_pseudo(config, data, dev, progress)
    consistency_s = time.perf_counter() - t0

    # 2. Model and optimiser.
    bridge = Bridge(config.bridge_meta()).to(dev)
    bridge.train()
    optimizer = torch.optim.AdamW(bridge.parameters(), lr=opt_cfg.lr, weight_decay=opt_cfg.weight_decay)
    batches = _Batches((data.overlap[0], data.overlap[1], pseudo[0], pseudo[1]), dev)
    n = data.n_pairs
    batch_size = min(opt_cfg.batch_size, n)
    steps_per_epoch = n // batch_size + (1 if n % batch_size >= 2 else 0)  # BatchNorm needs >= 2 rows
    total_steps = steps_per_epoch * opt_cfg.epochs
    order_gen = torch.Generator().manual_seed(opt_cfg.seed)
    noise_gen = torch.Generator(device=dev).manual_seed(opt_cfg.seed + 1)

    def complete(x: torch.Tensor) -> torch.Tensor:
        return semantic_completion(x, method.noise_var, noise=abl.noise, renorm=abl.renorm, generator=noise_gen)

    # 3. The loop.
    history: list[dict[str, float]] = []
    step = 0
    train_s = 0.0
    bar = tqdm(total=total_steps, desc=f"train {config.name}", unit="step", disable=None if progress else True)
    for epoch in range(opt_cfg.epochs):
        t_epoch = time.perf_counter()
        perm = torch.randperm(n, generator=order_gen)
        sums = {"loss": 0.0, "ttc": 0.0, "avc": 0.0, "intra": 0.0}
        for b in range(steps_per_epoch):
            lr = cosine_lr(step, total_steps, opt_cfg.lr, opt_cfg.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0_batch, t1_batch, v0_batch, v1_batch = batches.get(perm[b * batch_size : (b + 1) * batch_size])
            # Eq. 3-4: noise, re-normalise, project (heads end in L2 normalisation).
            t0 = bridge.forward_space(spaces[0], complete(t0_batch))
            t1 = bridge.forward_space(spaces[1], complete(t1_batch))
            v0 = bridge.forward_space(spaces[0], complete(v0_batch))
            v1 = bridge.forward_space(spaces[1], complete(v1_batch))
            # Eq. 5-7: inter-MCR; eq. 9: intra-MCR, each side's term switchable.
            zero = t0.new_zeros(())
            ttc = info_nce(t0, t1, method.tau2) if abl.ttc else zero
            avc = info_nce(v0, v1, method.tau3) if abl.avc else zero
            intra = zero
            if spaces[0] in config.intra_sides:
                intra = intra + 0.5 * intra_alignment(t0, v0)
            if spaces[1] in config.intra_sides:
                intra = intra + 0.5 * intra_alignment(t1, v1)
            loss = ttc + avc + method.lambda_intra * intra
            optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:
                loss.backward()
                optimizer.step()
            step += 1
            for key, value in (("loss", loss), ("ttc", ttc), ("avc", avc), ("intra", intra)):
                sums[key] += float(value.detach())
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{sums['loss'] / (b + 1):.4f}", lr=f"{lr:.2e}")
        seconds = time.perf_counter() - t_epoch
        train_s += seconds
        row = {k: v / steps_per_epoch for k, v in sums.items()} | {
            "epoch": epoch + 1,
            "lr": lr,
            "seconds": seconds,
        }
        history.append(row)
        log.info("epoch %d: %s", epoch + 1, row)
        if on_epoch is not None:
            on_epoch(row)
    bar.close()

    bridge.eval()
    samples_per_s = n * opt_cfg.epochs / train_s if train_s > 0 else 0.0
    bridge.meta = replace(
        bridge.meta,
        data_fingerprint=data.fingerprint,
        package_version=__version__,
        metrics={
            "final": {k: history[-1][k] for k in ("loss", "ttc", "avc", "intra")} if history else {},
            "steps": step,
            "pairs": n,
            "memory_rows": [int(m.shape[0]) for m in data.memory],
            "samples_per_s": samples_per_s,
            "train_seconds": train_s,
            "consistency_seconds": consistency_s,
            "device": str(dev),
        },
    )
    return TrainResult(bridge=bridge, history=history, samples_per_s=samples_per_s, consistency_s=consistency_s)


def train_from_folder(
    config: TrainConfig,
    embeddings: str | Path,
    out: str | Path,
    *,
    device: str | None = None,
    progress: bool = True,
) -> tuple[TrainResult, str]:
    """Validate the arrays in `embeddings`, train, and save the bridge to `out`; returns its fingerprint."""
    data = load_bridge_data(embeddings, config)
    result = train_bridge(config, data, device=device, progress=progress)
    fingerprint = save_bridge(result.bridge, out)
    return result, fingerprint
