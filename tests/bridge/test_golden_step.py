"""Golden step: the trainer's numbers recomputed from the paper's equations by an independent reference.

From fixed weights, a fixed small world and fixed completion-noise draws, the reference below computes
the semantic-consistency pass (eq. 2), one training step (eq. 3-10: loss, every parameter's gradient,
the per-kind BatchNorm statistics and AdamW's first update) and one held-out evaluation, and the
product must agree: loss terms to 1e-6 relative, gradients to 1e-5. A last test checks that
train_bridge feeds its steps exactly these inputs (each caption pair with the eq. 2 rows of its own
side's memory).

Eq. 2 is compared at float32 precision (1e-6), the precision the product computes it in
(bridge/consistency.py); the step is then fed the product's eq. 2 rows on both sides, so that the float64
comparison of eq. 3-10 is not limited by that rounding (fed the reference's own float64 rows, the
gradients differ by up to 6e-5 relative, all of it float32 rounding of the pseudo embeddings).

The reference is written from the paper (C-MCR, NeurIPS 2023, sections 3.2-3.5, table 6) with plain
tensor operations and float64 throughout. It reads the parameter values from the bridge's state_dict
and calls nothing else of avsearch: no head forward, no loss function, no consistency code (the world's
set-up takes only the parameter names and shapes from a Bridge). Its hyper-parameters are the paper's
(section 4.1), written out here, not read from the config.

Where the product's conventions are not in the paper the reference follows them, and says so:
- BatchNorm (table 6's BatchNorm1D): PyTorch's eps 1e-5 and momentum 0.1; in training each input kind
  (captions; pseudo embeddings) is a separate batch normalised by its own statistics and updates only
  its own running statistics (bridge/heads.py: PerKindBatchNorm1d).
- Projected embeddings are L2-normalised (eq. 5, 6 and 9 compare unit vectors: sim is the cosine and
  eq. 9 is derived "in the L2-normalized MCR space").
- The held-out evaluation (not in the paper) is every loss term in eval mode with each kind's running
  statistics, no noise, inputs at unit norm (as Bridge.project feeds them at inference; pseudo embeddings
  from eq. 2 are shorter than 1), over chunks of batch_size rows, chunks of one row skipped, weighted by
  chunk size.
- AdamW's weight decay is its default 0.01 (the paper does not state one; bridge/config.py says so).

Not covered here: the BatchNorm calibration after training (bridge/calibration.py); test_train.py checks
it against a full-batch forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch

import avsearch.bridge.train as train_module
from avsearch.bridge.config import TrainConfig, load_train_config, with_overrides
from avsearch.bridge.data import BridgeData

# Section 4.1 (connecting CLAP and CLIP): tau1 = tau2 = tau3 = 1/100, sigma^2 = 0.004, lambda = 0.1,
# AdamW with initial learning rate 1e-3 (the cosine schedule starts there).
TAU1 = TAU2 = TAU3 = 0.01
SIGMA2 = 0.004
LAMBDA = 0.1
LR = 1e-3
WEIGHT_DECAY = 0.01  # AdamW's default (the paper states none)
ADAM_EPS = 1e-8  # AdamW's default
BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # PyTorch BatchNorm1d defaults (table 6 names BatchNorm1D)

SPACES = ("clip", "clap")
N = 10  # caption pairs: the training batch, and the held-out rows
HIDDEN, OUT = 8, 6  # table 6's shape (Linear-BN-ReLU-Linear-BN-ReLU), narrowed
HELDOUT_BATCH = 3  # chunks of 3, 3, 3 and a single row that the evaluation skips


# ---------------------------------------------------------------------------------------------------
# The reference: the paper's equations in float64.


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / torch.sqrt((x * x).sum(dim=1, keepdim=True))


def ref_weights(t: torch.Tensor, memory: torch.Tensor, tau1: float = TAU1) -> torch.Tensor:
    """Eq. 2's weights: exp(sim(t_i, v_k) / tau1) / sum_j exp(sim(t_i, v_j) / tau1) over the whole memory
    (the dense softmax), sim the cosine."""
    logits = _unit(t) @ _unit(memory).T / tau1
    weights = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
    return weights / weights.sum(dim=1, keepdim=True)


def ref_pseudo(t: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Eq. 2: v_i = sum_k weight_ik * v_k."""
    return ref_weights(t, memory) @ memory


def ref_complete(x: torch.Tensor, draw: torch.Tensor) -> torch.Tensor:
    """Eq. 3: Normalize(x + theta), theta zero-mean gaussian of variance sigma^2 (theta = sigma * draw)."""
    return _unit(x + math.sqrt(SIGMA2) * draw)


def ref_batchnorm(
    h: torch.Tensor, p: dict[str, torch.Tensor], prefix: str, kind: str, training: bool
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """BatchNorm1D on one batch of one input kind: batch statistics in training (biased variance),
    the kind's running statistics in evaluation. Also returns (batch mean, unbiased batch variance),
    what the running statistics move towards."""
    mean, var = h.mean(dim=0), ((h - h.mean(dim=0)) ** 2).mean(dim=0)
    seen = (mean, var * h.shape[0] / (h.shape[0] - 1))
    if not training:
        mean, var = p[f"{prefix}running_mean_{kind}"], p[f"{prefix}running_var_{kind}"]
    return (h - mean) / torch.sqrt(var + BN_EPS) * p[f"{prefix}weight"] + p[f"{prefix}bias"], seen


def ref_head(
    p: dict[str, torch.Tensor], space: str, x: torch.Tensor, kind: str, training: bool
) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Eq. 4 with table 6's projector: Linear, BatchNorm1D, ReLU, Linear, BatchNorm1D, ReLU; the output
    L2-normalised. Also returns each BatchNorm layer's batch statistics."""
    seen = {}
    h = x
    for block in ("net1", "net2"):
        pre = f"heads.{space}.{block}."
        h = h @ p[f"{pre}0.weight"].T + p[f"{pre}0.bias"]
        h, seen[f"{pre}1."] = ref_batchnorm(h, p, f"{pre}1.", kind, training)
        h = torch.clamp(h, min=0.0)
    return _unit(h), seen


def ref_info_nce(x: torch.Tensor, z: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 5/6: -1/2 1/B sum_i [log softmax_j(sim(x_i, z_j)/tau)_i + log softmax_j(sim(z_i, x_j)/tau)_i]."""
    s = _unit(x) @ _unit(z).T / tau
    x_to_z = s.diagonal() - torch.logsumexp(s, dim=1)  # row i: x_i against every z_j
    z_to_x = s.diagonal() - torch.logsumexp(s, dim=0)  # column i: z_i against every x_j
    return -0.5 / x.shape[0] * (x_to_z + z_to_x).sum()


def _dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(((x - y) ** 2).sum(dim=1))


Stats = list[tuple[str, str, torch.Tensor, torch.Tensor]]  # (BatchNorm layer, kind, batch mean, batch variance)


def ref_objective(
    p: dict[str, torch.Tensor], inputs: list[torch.Tensor], training: bool
) -> tuple[dict[str, torch.Tensor], Stats]:
    """Eq. 4-10 on completed inputs (t^I, t^A, v^I, a^A): every term, and each BatchNorm layer's batch
    statistics per input kind."""
    stats: Stats = []
    projected = []
    kinds = ("overlap", "overlap", "memory", "memory")
    for space, x, kind in zip(("clip", "clap", "clip", "clap"), inputs, kinds, strict=True):
        out, seen = ref_head(p, space, x, kind, training)
        projected.append(out)
        stats += [(layer, kind, mean, var) for layer, (mean, var) in seen.items()]
    ht_i, ht_a, hv_i, ha_a = projected
    b = inputs[0].shape[0]
    terms = {
        "ttc": ref_info_nce(ht_i, ht_a, TAU2),  # eq. 5
        "avc": ref_info_nce(hv_i, ha_a, TAU3),  # eq. 6
        "intra_clip": _dist(ht_i, hv_i).mean(),  # the two sums of eq. 9, each over the batch
        "intra_clap": _dist(ht_a, ha_a).mean(),
        "intra": 0.5 / b * (_dist(ht_i, hv_i) + _dist(ht_a, ha_a)).sum(),  # eq. 9
    }
    terms["loss"] = terms["ttc"] + terms["avc"] + LAMBDA * terms["intra"]  # eq. 7 and 10
    return terms, stats


# ---------------------------------------------------------------------------------------------------
# The fixed world: weights, captions, memories, noise draws.


@dataclass
class World:
    config: TrainConfig
    data: BridgeData  # float32, as the product reads arrays
    state: dict[str, torch.Tensor]  # float64 weights and BatchNorm statistics of both heads
    draws: list[torch.Tensor]  # standard-normal completion draws: overlap clip, overlap clap, pseudo clip, clap


def _config(dims: tuple[int, int]) -> TrainConfig:
    base = load_train_config("audio_visual")
    sides = tuple(replace(s, dim=d) for s, d in zip(base.sides, dims, strict=True))
    cfg = replace(base, sides=sides, head=replace(base.head, hidden=HIDDEN, out_dim=OUT))  # type: ignore[arg-type]
    return with_overrides(cfg, backend="exact", holdout=0.2)


def _make_world(dims: tuple[int, int]) -> World:
    cfg = _config(dims)
    g = torch.Generator().manual_seed(sum(dims))
    overlap, memory = [], []
    for d in dims:
        t = _unit(torch.randn(N, d, generator=g, dtype=torch.float64))
        # Two close neighbours of every caption plus unrelated rows: at tau1 = 0.01 the softmax then
        # mixes rows (a pseudo embedding is not one memory row), as on real data.
        near = _unit(t.repeat(2, 1) + 0.04 * torch.randn(2 * N, d, generator=g, dtype=torch.float64))
        far = _unit(torch.randn(5, d, generator=g, dtype=torch.float64))
        overlap.append(t.float().numpy())
        memory.append(torch.cat([near, far])[torch.randperm(2 * N + 5, generator=g)].float().numpy())
    data = BridgeData((overlap[0], overlap[1]), (memory[0], memory[1]), fingerprint="golden")
    shapes = {k: v.shape for k, v in train_module.Bridge(cfg.bridge_meta()).state_dict().items()}
    state = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked_overlap") or name.endswith("num_batches_tracked_memory"):
            state[name] = torch.tensor(3, dtype=torch.long)
        elif ".running_var_" in name:
            state[name] = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
        elif ".running_mean_" in name:
            state[name] = 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif name.endswith("1.weight"):  # BatchNorm scale
            state[name] = 1.0 + 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif name.endswith("1.bias"):  # BatchNorm shift
            state[name] = 0.5 + 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
        else:  # Linear layers
            state[name] = torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(shape[-1])
    draws = [torch.randn(N, d, generator=g, dtype=torch.float64) for d in (*dims, *dims)]
    return World(cfg, data, state, draws)


@pytest.fixture(params=[(6, 6), (7, 5)], ids=["same-width", "different-widths"])
def world(request: pytest.FixtureRequest) -> World:
    return _make_world(request.param)


def _f64(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, np.float64))


def _product_pseudo(world: World) -> list[torch.Tensor]:
    pseudo, reports = train_module.consistency_for_sides(world.config, world.data, torch.device("cpu"), False)
    assert [r.backend for r in reports] == ["exact", "exact"]
    return [_f64(p) for p in pseudo]


def _reference_pseudo(world: World) -> list[torch.Tensor]:
    return [ref_pseudo(_f64(world.data.overlap[i]), _f64(world.data.memory[i])) for i in range(2)]


def _run(world: World) -> train_module._Run:
    """The product's model and optimiser for this config, in float64, holding the world's weights."""
    run = train_module._new_run(world.config, torch.device("cpu"))
    run.bridge.double()
    run.bridge.load_state_dict(world.state)
    return run


def _close(got: torch.Tensor, want: torch.Tensor, rel: float, what: str) -> None:
    torch.testing.assert_close(got.detach(), want.detach(), rtol=rel, atol=1e-12, msg=lambda m: f"{what}: {m}")


# ---------------------------------------------------------------------------------------------------
# The checks.


def test_the_config_under_test_holds_the_papers_hyper_parameters(world):
    m = world.config.method
    assert (m.tau1, m.tau2, m.tau3, m.noise_var, m.lambda_intra) == (TAU1, TAU2, TAU3, SIGMA2, LAMBDA)
    assert world.config.optim.lr == LR and world.config.optim.weight_decay == WEIGHT_DECAY
    assert world.config.head.kind == "mlp" and world.config.head.norm_stats == "per_kind"


def test_semantic_consistency_is_equation_2(world):
    # The product computes eq. 2 in float32 (streamed softmax); the reference is the dense formula.
    want = _reference_pseudo(world)
    for i, got in enumerate(_product_pseudo(world)):
        torch.testing.assert_close(got, want[i], rtol=0, atol=1e-6, msg=lambda m, i=i: f"side {i}: {m}")
    # The world makes the softmax mix memory rows (no pseudo embedding is one row), as on real data.
    for i in range(2):
        assert float(ref_weights(_f64(world.data.overlap[i]), _f64(world.data.memory[i])).max()) < 0.8


def test_one_training_step_is_equations_3_to_10(world):
    pseudo = _product_pseudo(world)  # checked against eq. 2 above; fed to both sides of the comparison
    batch = [_f64(world.data.overlap[0]), _f64(world.data.overlap[1]), *pseudo]
    run = _run(world)
    complete = train_module.completion(world.config, None, [d.clone() for d in world.draws])
    terms = train_module.train_step(run.bridge, run.optimizer, world.config, batch, complete, LR)

    params = {k: v.clone().requires_grad_(True) for k, v in world.state.items() if v.is_floating_point()}
    params = {k: params[k] for k, _ in run.bridge.named_parameters()}
    p = {**world.state, **params}
    inputs = [ref_complete(x, d) for x, d in zip(batch, world.draws, strict=True)]
    want, stats = ref_objective(p, inputs, training=True)
    for key, value in want.items():
        _close(terms[key], value, 1e-6, f"loss term {key}")
    assert set(terms) == set(want)

    # Every parameter's gradient.
    grads = torch.autograd.grad(want["loss"], list(params.values()))
    for (name, param), grad in zip(run.bridge.named_parameters(), grads, strict=True):
        assert param.grad is not None, name
        _close(param.grad, grad, 1e-5, f"gradient of {name}")

    # The step itself: AdamW's first update (m = g, v = g^2 after bias correction) with weight decay.
    # A Linear bias followed by BatchNorm has no gradient (the batch mean removes any shift): its
    # computed gradient is rounding noise, which AdamW's first step scales to an arbitrary size.
    after = run.bridge.state_dict()
    for (name, _), grad in zip(run.bridge.named_parameters(), grads, strict=True):
        before = world.state[name]
        if name.endswith(".0.bias"):
            assert float(grad.abs().max()) < 1e-12, name
            continue
        expected = before * (1 - LR * WEIGHT_DECAY) - LR * grad / (grad.abs() + ADAM_EPS)
        torch.testing.assert_close(after[name], expected, rtol=0, atol=1e-9, msg=lambda m, n=name: f"{n}: {m}")

    # Each input kind's running statistics moved towards that kind's batch statistics, once.
    for layer, kind, mean, var in stats:
        rm, rv = f"{layer}running_mean_{kind}", f"{layer}running_var_{kind}"
        _close(after[rm], (1 - BN_MOMENTUM) * world.state[rm] + BN_MOMENTUM * mean, 1e-9, rm)
        _close(after[rv], (1 - BN_MOMENTUM) * world.state[rv] + BN_MOMENTUM * var, 1e-9, rv)
        assert int(after[f"{layer}num_batches_tracked_{kind}"]) == 4
    assert len(stats) == 2 * 2 * 2  # 2 heads x 2 BatchNorm layers x 2 kinds


def test_one_held_out_evaluation_is_every_term_in_eval_mode(world):
    pseudo = _product_pseudo(world)
    rows = [_f64(world.data.overlap[0]), _f64(world.data.overlap[1]), *pseudo]

    class Rows:  # what evaluate_holdout reads: len() and get(positions), here in float64
        def __len__(self) -> int:
            return N

        def get(self, idx: torch.Tensor) -> list[torch.Tensor]:
            return [r[idx] for r in rows]

    run = _run(world)
    run.bridge.train()
    got = train_module.evaluate_holdout(run.bridge, world.config, Rows(), HELDOUT_BATCH)  # type: ignore[arg-type]
    assert run.bridge.training  # the mode is restored

    totals: dict[str, torch.Tensor] = {}
    count = 0
    for start in range(0, N, HELDOUT_BATCH):
        chunk = [r[start : start + HELDOUT_BATCH] for r in rows]
        chunk = [c / c.norm(dim=1, keepdim=True) for c in chunk]  # unit norm, no noise
        if chunk[0].shape[0] < 2:  # one row: no contrast, skipped
            continue
        terms, _ = ref_objective(world.state, chunk, training=False)
        for key, value in terms.items():
            totals[key] = totals.get(key, 0.0) + value * chunk[0].shape[0]
        count += chunk[0].shape[0]
    assert count == N - 1
    assert set(got) == set(totals)
    for key, value in totals.items():
        assert got[key] == pytest.approx(float(value) / count, rel=1e-6), key
    # Evaluation neither trains nor moves any statistics.
    after = run.bridge.state_dict()
    assert all(torch.equal(after[k], world.state[k]) for k in world.state)


def test_training_feeds_each_step_the_caption_pairs_and_their_own_sides_pseudo_embeddings(world, monkeypatch):
    # What train_bridge hands to loss_terms: rows of (t^I, t^A, eq. 2 of t^I in the image memory, eq. 2
    # of t^A in the audio memory), all from the same captions; training and held-out rows disjoint;
    # training batches completed (unit norm, noise added), held-out ones at unit norm without noise.
    seen: list[tuple[bool, list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]] = []
    original = train_module.loss_terms

    def spy(bridge, config, batch, complete):
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

        def watched(x: torch.Tensor) -> torch.Tensor:
            out = complete(x)
            pairs.append((x.detach().clone(), out.detach().clone()))
            return out

        seen.append((bridge.training, [b.detach().clone() for b in batch], pairs))
        return original(bridge, config, batch, watched)

    monkeypatch.setattr(train_module, "loss_terms", spy)
    cfg = with_overrides(world.config, epochs=1, batch_size=4)
    train_module.train_bridge(cfg, world.data, progress=False)

    overlap = [_f64(a) for a in world.data.overlap]
    pseudo = _reference_pseudo(world)
    used: dict[bool, list[int]] = {True: [], False: []}
    for training, batch, pairs in seen:
        t0 = batch[0].double()
        rows = [int(torch.argmin(((overlap[0] - r) ** 2).sum(dim=1))) for r in t0]
        used[training] += rows
        want = [overlap[0][rows], overlap[1][rows], pseudo[0][rows], pseudo[1][rows]]
        for i, (got, expected) in enumerate(zip(batch, want, strict=True)):
            torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-6, msg=lambda m, i=i: f"input {i}: {m}")
        assert len(pairs) == 4
        for x, out in pairs:
            if training:
                assert torch.allclose(out.norm(dim=1), torch.ones(len(out), dtype=out.dtype), atol=1e-5)
                assert not torch.allclose(out, x / x.norm(dim=1, keepdim=True), atol=1e-4)
            else:  # held out: unit norm, no noise
                torch.testing.assert_close(out, x / x.norm(dim=1, keepdim=True), rtol=0, atol=1e-6)
    assert sorted(used[True] + used[False]) == list(range(N))
    assert used[True] and used[False]
