"""Training loop for a C-MCR bridge (paper section 3.5), read top to bottom:

1. semantic consistency: pseudo embeddings of each side's memory modality, computed once (eq. 2);
2. a small held-out share of the overlap pairs, scored after every epoch (all loss terms, eval mode);
3. per step: fresh semantic-completion noise on all four batches (eq. 3), projection by both heads
   (eq. 4; overlap and pseudo batches each with their own BatchNorm statistics), L = L_ttc + L_avc +
   lambda * L_intra (eq. 5-10);
4. AdamW with cosine learning-rate decay per step; everything seeded, so a run is reproducible, and a
   checkpoint after every epoch (weights, optimiser, step, random states) lets a run resume exactly;
5. BatchNorm calibration: each input kind's statistics set to those of its real inputs (the memories
   for media, the overlap rows for the overlap modality; see bridge/calibration.py).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from avsearch import __version__
from avsearch.bridge.checkpoint import TrainCheckpoint, load_checkpoint, save_checkpoint
from avsearch.bridge.confidence import pair_key, pseudo_calibration
from avsearch.bridge.config import TrainConfig
from avsearch.bridge.consistency import ConsistencyReport, consistency_pass
from avsearch.bridge.data import BridgeData, load_bridge_data
from avsearch.bridge.io import save_bridge
from avsearch.bridge.losses import info_nce, intra_alignment, semantic_completion
from avsearch.bridge.model import Bridge
from avsearch.device import pick_device

log = logging.getLogger(__name__)

RESIDENT_BYTES = 2 << 30  # training arrays up to this size are copied to the device once
TERMS = ("loss", "ttc", "avc", "intra")


@dataclass
class TrainResult:
    bridge: Bridge
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    samples_per_s: float = 0.0  # training throughput (overlap pairs per second), consistency excluded
    consistency_s: float = 0.0  # seconds spent on eq. 2
    consistency: tuple[ConsistencyReport, ...] = ()  # per side: backend chosen, deviation from exact


def cosine_lr(step: int, total_steps: int, base_lr: float, min_ratio: float = 0.0) -> float:
    """Cosine decay from base_lr at step 0 to base_lr * min_ratio at the last step."""
    progress = min(step / max(total_steps - 1, 1), 1.0)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def compute_pseudo(
    config: TrainConfig, data: BridgeData, device: torch.device, progress: bool
) -> tuple[np.ndarray, ...]:
    """Eq. 2 for both sides: the pseudo embeddings only (see consistency_for_sides)."""
    return consistency_for_sides(config, data, device, progress)[0]


def consistency_for_sides(
    config: TrainConfig, data: BridgeData, device: torch.device, progress: bool
) -> tuple[tuple[np.ndarray, ...], tuple[ConsistencyReport, ...]]:
    """Eq. 2 for both sides: each overlap row's pseudo embedding drawn from that side's memory.

    Called once per run, before the loop: the encoders are frozen, so the pseudo embeddings do not
    change between epochs (the paper pre-computes them offline). Each memory's index, if the backend
    builds one, is built once here and serves the whole pass.
    """
    c = config.consistency
    pseudo, reports = [], []
    for i in range(2):
        out, report = consistency_pass(
            data.overlap[i],
            data.memory[i],
            config.method.tau1,
            mode=c.mode,
            backend=c.backend,
            approx_above=c.approx_above,
            nlist=c.nlist,
            nprobe=c.nprobe,
            target_cosine=c.target_cosine,
            check_queries=c.check_queries,
            query_chunk=c.query_chunk,
            memory_chunk=c.memory_chunk,
            seed=config.optim.seed + i,
            device=device,
            progress=progress,
        )
        log.info("%s (%s memory, %.1f s)", report.line(), config.sides[i].memory, report.seconds)
        pseudo.append(out)
        reports.append(report)
    return tuple(pseudo), tuple(reports)


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, held-out): a seeded `fraction` of the n overlap pairs, at least 2 if any."""
    n_held = 0 if fraction <= 0 else min(max(2, round(n * fraction)), n - 2)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_held:]), np.sort(order[:n_held])


class _Batches:
    """Row-aligned batches of the four training arrays (restricted to `rows`), on the device."""

    def __init__(self, arrays: tuple[np.ndarray, ...], rows: np.ndarray, device: torch.device) -> None:
        self.device = device
        self.rows = rows
        self.resident = sum(a.nbytes for a in arrays) * len(rows) / max(len(arrays[0]), 1) <= RESIDENT_BYTES
        if self.resident:
            self.arrays: tuple[Any, ...] = tuple(
                torch.tensor(np.asarray(a[rows], np.float32)).to(device) for a in arrays
            )
        else:
            self.arrays = arrays

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Batch of positions `idx` into `rows`."""
        if self.resident:
            idx = idx.to(self.device)
            return [a[idx] for a in self.arrays]
        rows = np.sort(self.rows[idx.numpy()])  # sorted reads are much faster on memory-mapped arrays
        return [torch.from_numpy(np.asarray(a[rows], np.float32)).to(self.device) for a in self.arrays]


def loss_terms(
    bridge: Bridge, config: TrainConfig, batch: list[torch.Tensor], complete: Callable[[torch.Tensor], torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Eq. 4-10 on one batch (overlap side 0, overlap side 1, pseudo side 0, pseudo side 1).

    Returns every term whether or not the ablation switches use it, so the history and the held-out
    score show what an ablation did: "intra" is eq. 9 over both sides, "intra_<space>" each side's
    term; "loss" is the objective actually optimised (the switched-on terms only).
    """
    spaces = [s.space for s in config.sides]
    method, abl = config.method, config.ablation
    t0, t1, v0, v1 = batch
    # Eq. 3-4: noise, re-normalise, project; overlap and pseudo batches are different input kinds.
    t0 = bridge.forward_space(spaces[0], complete(t0), "overlap")
    t1 = bridge.forward_space(spaces[1], complete(t1), "overlap")
    v0 = bridge.forward_space(spaces[0], complete(v0), "memory")
    v1 = bridge.forward_space(spaces[1], complete(v1), "memory")
    terms = {
        "ttc": info_nce(t0, t1, method.tau2),  # eq. 5
        "avc": info_nce(v0, v1, method.tau3),  # eq. 6
        f"intra_{spaces[0]}": intra_alignment(t0, v0),  # eq. 9, one side each
        f"intra_{spaces[1]}": intra_alignment(t1, v1),
    }
    terms["intra"] = 0.5 * (terms[f"intra_{spaces[0]}"] + terms[f"intra_{spaces[1]}"])
    zero = t0.new_zeros(())
    loss = (terms["ttc"] if abl.ttc else zero) + (terms["avc"] if abl.avc else zero)
    terms["loss"] = loss + method.lambda_intra * sum((0.5 * terms[f"intra_{s}"] for s in config.intra_sides), zero)
    return terms


def completion(
    config: TrainConfig, generator: torch.Generator | None, draws: Sequence[torch.Tensor] | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Eq. 3 as a training step applies it (noise and re-normalisation as the ablation switches say):
    fresh noise from `generator` for each batch, or else the standard-normal `draws`, one per call in
    the order loss_terms completes its batches (overlap 0, overlap 1, pseudo 0, pseudo 1)."""
    method, abl = config.method, config.ablation
    pending = list(draws) if draws is not None else None

    def complete(x: torch.Tensor) -> torch.Tensor:
        draw = pending.pop(0) if pending is not None else None
        return semantic_completion(
            x, method.noise_var, noise=abl.noise, renorm=abl.renorm, generator=generator, draw=draw
        )

    return complete


def train_step(
    bridge: Bridge,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    batch: list[torch.Tensor],
    complete: Callable[[torch.Tensor], torch.Tensor],
    lr: float,
) -> dict[str, torch.Tensor]:
    """One optimisation step on `batch` (eq. 3-10, then AdamW at learning rate `lr`); returns the loss
    terms. The gradients stay in the parameters' .grad until the next step clears them."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    terms = loss_terms(bridge, config, batch, complete)
    optimizer.zero_grad(set_to_none=True)
    if terms["loss"].requires_grad:
        terms["loss"].backward()
        optimizer.step()
    return terms


@torch.no_grad()
def evaluate_holdout(bridge: Bridge, config: TrainConfig, batches: _Batches, batch_size: int) -> dict[str, float]:
    """All loss terms on the held-out pairs as inference sees them: eval mode, no noise, inputs at unit
    norm (Bridge.project normalises every input; pseudo embeddings from eq. 2 are shorter than 1)."""
    was_training = bridge.training
    bridge.eval()
    sums: dict[str, float] = {}
    count = 0
    for start in range(0, len(batches), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(batches)))
        if len(idx) < 2:
            continue
        terms = loss_terms(bridge, config, batches.get(idx), lambda x: F.normalize(x, dim=-1))
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + float(value) * len(idx)
        count += len(idx)
    bridge.train(was_training)
    return {key: value / count for key, value in sums.items()} if count else {}


@dataclass
class _Run:
    """The state of one training run: what a checkpoint saves and a resume restores."""

    bridge: Bridge
    optimizer: torch.optim.Optimizer
    order_gen: torch.Generator  # batch order
    noise_gen: torch.Generator  # completion noise (eq. 3)
    step: int = 0
    epoch: int = 0  # epochs done
    train_s: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def train_bridge(
    config: TrainConfig,
    data: BridgeData,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Fit the two projector heads of `config` on `data` and return the trained bridge (eval mode).

    With `checkpoint`, the training state is saved there after every epoch; with `resume` as well, a
    run continues from that file (same config and data required) and ends with the same weights as an
    uninterrupted run.
    """
    dev = pick_device(str(device)) if device is not None else pick_device()
    opt_cfg = config.optim
    torch.manual_seed(opt_cfg.seed)

    # 1. Semantic consistency (training-free, so computed once before the loop).
    t0 = time.perf_counter()
    pseudo, reports = consistency_for_sides(config, data, dev, progress)
    consistency_s = time.perf_counter() - t0

    # 2. Held-out pairs, model and optimiser (or the state of an interrupted run).
    train_rows, held_rows = split_holdout(data.n_pairs, opt_cfg.holdout, opt_cfg.seed)
    arrays = (data.overlap[0], data.overlap[1], pseudo[0], pseudo[1])
    batches, held = _Batches(arrays, train_rows, dev), _Batches(arrays, held_rows, dev)
    run = _new_run(config, dev)
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        _restore(run, load_checkpoint(checkpoint, config, data.fingerprint))
        log.info("resumed %s at epoch %d (step %d)", checkpoint, run.epoch, run.step)

    # 3. The loop: one epoch at a time, each ending with a held-out score and a checkpoint.
    batch_size = min(opt_cfg.batch_size, len(batches))
    steps = _steps_per_epoch(len(batches), batch_size)
    bar = tqdm(
        total=steps * opt_cfg.epochs,
        initial=run.step,
        desc=f"train {config.name}",
        unit="step",
        disable=None if progress else True,  # None: off when stderr is not a terminal
    )
    while run.epoch < opt_cfg.epochs:
        row = _train_epoch(run, config, batches, batch_size, steps, bar)
        row |= {f"heldout_{k}": v for k, v in evaluate_holdout(run.bridge, config, held, batch_size).items()}
        run.history.append(row)
        log.info("epoch %d: %s", run.epoch, row)
        if checkpoint is not None:
            save_checkpoint(checkpoint, _snapshot(run, config, data.fingerprint))
        if on_epoch is not None:
            on_epoch(row)
    bar.close()

    # 4. Calibration: inference inputs are real media, not pseudo embeddings (bridge/calibration.py).
    bridge = run.bridge
    for i, side in enumerate(config.sides):
        bridge.recalibrate(side.space, side.memory, data.memory[i])
        bridge.recalibrate(side.space, config.overlap, data.overlap[i])
    bridge.eval()
    samples_per_s = len(batches) * opt_cfg.epochs / run.train_s if run.train_s > 0 else 0.0
    # 5. Score calibration from the held-out captions' pseudo pairs (bridge/confidence.py).
    sides = config.sides
    calibration = pseudo_calibration(
        lambda i, x: bridge.project(sides[i].space, x, modality=sides[i].memory), pseudo, held_rows, opt_cfg.seed
    )
    if calibration is None:
        log.warning("too few held-out captions (%d) for a score calibration: scores stay uncalibrated", held_rows.size)
    bridge.meta = replace(
        bridge.meta,
        calibrations={pair_key(sides[0].memory, sides[1].memory): calibration.to_dict()} if calibration else {},
        data_fingerprint=data.fingerprint,
        package_version=__version__,
        metrics=_metrics(run, data, len(batches), len(held), samples_per_s, consistency_s, dev)
        | {"consistency": [dataclasses.asdict(r) for r in reports]},
    )
    return TrainResult(
        bridge=bridge,
        history=run.history,
        samples_per_s=samples_per_s,
        consistency_s=consistency_s,
        consistency=reports,
    )


def _new_run(config: TrainConfig, dev: torch.device) -> _Run:
    opt_cfg = config.optim
    bridge = Bridge(config.bridge_meta()).to(dev)
    bridge.train()
    optimizer = torch.optim.AdamW(bridge.parameters(), lr=opt_cfg.lr, weight_decay=opt_cfg.weight_decay)
    order_gen = torch.Generator().manual_seed(opt_cfg.seed)
    noise_gen = torch.Generator(device=dev).manual_seed(opt_cfg.seed + 1)
    return _Run(bridge, optimizer, order_gen, noise_gen)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return n // batch_size + (1 if n % batch_size >= 2 else 0)  # BatchNorm needs >= 2 rows


def _train_epoch(
    run: _Run, config: TrainConfig, batches: _Batches, batch_size: int, steps: int, bar: Any
) -> dict[str, float]:
    """One pass over the training pairs in a fresh order; returns the epoch's mean loss terms."""
    opt_cfg = config.optim
    total_steps = steps * opt_cfg.epochs
    complete = completion(config, run.noise_gen)
    started = time.perf_counter()
    perm = torch.randperm(len(batches), generator=run.order_gen)
    sums: dict[str, float] = {}
    lr = opt_cfg.lr
    for b in range(steps):
        lr = cosine_lr(run.step, total_steps, opt_cfg.lr, opt_cfg.min_lr_ratio)
        batch = batches.get(perm[b * batch_size : (b + 1) * batch_size])
        terms = train_step(run.bridge, run.optimizer, config, batch, complete, lr)
        run.step += 1
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        bar.update(1)
        bar.set_postfix(epoch=run.epoch + 1, loss=f"{sums['loss'] / (b + 1):.4f}", lr=f"{lr:.2e}")
    seconds = time.perf_counter() - started
    run.train_s += seconds
    run.epoch += 1
    return {k: v / steps for k, v in sums.items()} | {"epoch": run.epoch, "lr": lr, "seconds": seconds}


def _snapshot(run: _Run, config: TrainConfig, data_fingerprint: str) -> TrainCheckpoint:
    return TrainCheckpoint(
        config=config.to_dict(),
        data_fingerprint=data_fingerprint,
        epoch=run.epoch,
        step=run.step,
        model=run.bridge.state_dict(),
        optimizer=run.optimizer.state_dict(),
        order_rng=run.order_gen.get_state(),
        noise_rng=run.noise_gen.get_state(),
        history=run.history,
        train_seconds=run.train_s,
    )


def _restore(run: _Run, state: TrainCheckpoint) -> None:
    run.bridge.load_state_dict(state.model)
    run.optimizer.load_state_dict(state.optimizer)
    run.order_gen.set_state(state.order_rng)
    run.noise_gen.set_state(state.noise_rng)
    run.step, run.epoch, run.train_s, run.history = state.step, state.epoch, state.train_seconds, list(state.history)


def _metrics(
    run: _Run,
    data: BridgeData,
    pairs: int,
    heldout_pairs: int,
    samples_per_s: float,
    consistency_s: float,
    dev: torch.device,
) -> dict[str, Any]:
    """What the bridge file records about its training."""
    last = run.history[-1] if run.history else {}
    return {
        "final": {k: last[k] for k in TERMS} if last else {},
        "heldout": {k[8:]: v for k, v in last.items() if k.startswith("heldout_")},
        "steps": run.step,
        "pairs": pairs,
        "heldout_pairs": heldout_pairs,
        "memory_rows": [int(m.shape[0]) for m in data.memory],
        "samples_per_s": samples_per_s,
        "train_seconds": run.train_s,
        "consistency_seconds": consistency_s,
        "device": str(dev),
    }


def train_from_folder(
    config: TrainConfig,
    embeddings: str | Path,
    out: str | Path,
    *,
    device: str | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    resume: bool = False,
) -> tuple[TrainResult, str]:
    """Validate the arrays in `embeddings`, train, and save the bridge to `out`; returns its fingerprint."""
    data = load_bridge_data(embeddings, config)
    result = train_bridge(config, data, device=device, progress=progress, checkpoint=checkpoint, resume=resume)
    fingerprint = save_bridge(result.bridge, out)
    return result, fingerprint
