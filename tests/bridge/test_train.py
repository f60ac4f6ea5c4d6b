"""The training loop's contracts: calibrated BatchNorm statistics, what each ablation switch does to
training, held-out scores, determinism and exact resumption. The method's quality: test_mutants.py."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import avsearch.bridge.train as train_module
from avsearch.bridge.config import load_train_config, with_overrides
from avsearch.bridge.consistency import pseudo_embeddings
from avsearch.bridge.data import BridgeData, load_bridge_data
from avsearch.bridge.model import Bridge
from avsearch.bridge.train import cosine_lr, train_bridge
from avsearch.errors import InputError
from avsearch.evaluation.ablations import score_bridge_on
from avsearch.evaluation.retrieval import chance_scores

from .conftest import narrow


@pytest.fixture(scope="module")
def data(synthetic_dir):
    return load_bridge_data(synthetic_dir, narrow(load_train_config("audio_visual")))


@pytest.fixture(scope="module")
def runs(data):
    """Two-epoch runs of the full method and of the table-5 rows whose effect is checked below."""
    base = narrow(with_overrides(load_train_config("audio_visual"), epochs=2, batch_size=512, holdout=0.1))
    rows = {
        "K": {},
        "A": {"intra": ("clip",)},
        "B": {"intra": ("clap",)},
        "C": {"intra": ("none",)},
        "D": {"ttc": False},
        "E": {"avc": False},
        "H": {"noise": False, "renorm": False},
        "J": {"mode": "random"},
    }
    return {row: train_bridge(with_overrides(base, **kw), data, progress=False) for row, kw in rows.items()}


def _held(runs, row, term):
    return runs[row].history[-1][f"heldout_{term}"]


def test_each_input_kind_is_normalised_with_its_own_population_statistics(runs, synthetic):
    # Eval mode must normalise the memories (media) and the captions exactly as one training batch of
    # all of them would be: by their own statistics, not a blend of caption and pseudo batches.
    bridge = runs["K"].bridge
    inputs = [
        ("clip", "image", synthetic.image_a),
        ("clap", "audio", synthetic.audio_b),
        ("clip", "text", synthetic.text_a),
        ("clap", "text", synthetic.text_b),
    ]
    for space, modality, x in inputs:
        kind = bridge.meta.input_kind(space, modality)
        full_batch = copy.deepcopy(bridge.heads[space]).train()
        with torch.no_grad():
            expected = F.normalize(full_batch(F.normalize(torch.tensor(x), dim=-1), kind), dim=-1).numpy()
        np.testing.assert_allclose(bridge.project(space, x, modality=modality), expected, atol=2e-3)


def test_calibration_beats_the_statistics_training_accumulated(runs, data, synthetic, monkeypatch):
    # Without calibration, media would be normalised with the running statistics of pseudo batches.
    cfg = runs["K"].bridge.meta.hyper
    calibrated = score_bridge_on(synthetic, runs["K"].bridge)[0].mAP
    monkeypatch.setattr(Bridge, "recalibrate", lambda *args, **kwargs: None)
    base = narrow(with_overrides(load_train_config("audio_visual"), epochs=2, batch_size=512, holdout=0.1))
    assert base.to_dict() == cfg  # the same run as K, calibration aside
    uncalibrated = train_bridge(base, data, progress=False).bridge
    assert score_bridge_on(synthetic, uncalibrated)[0].mAP < 0.8 * calibrated


@pytest.mark.parametrize(
    ("row", "term", "why"),
    [
        ("D", "ttc", "L_ttc off: projected caption pairs are not contrasted"),
        ("J", "avc", "random consistency: pseudo pairs share no meaning, so none can be aligned"),
    ],
)
def test_each_switched_off_term_is_worse_on_held_out_pairs_than_in_the_full_method(runs, row, term, why):
    # Runs are deterministic, so a switch that did nothing would give exactly K's value.
    assert _held(runs, row, term) > _held(runs, "K", term), why


@pytest.mark.parametrize("row", ["K", "A", "B", "C", "D", "E"])
def test_the_optimised_objective_holds_exactly_the_switched_on_terms(runs, row):
    # The saved config is not enough: the loss that was optimised must hold these terms and no others.
    on = {"K": "ttc avc clip clap", "A": "ttc avc clip", "B": "ttc avc clap", "C": "ttc avc", "D": "avc clip clap"}
    on |= {"E": "ttc clip clap"}
    terms = on[row].split()
    for epoch in runs[row].history:
        expected = sum(epoch[t] for t in ("ttc", "avc") if t in terms)
        expected += sum(0.1 * 0.5 * epoch[f"intra_{side}"] for side in ("clip", "clap") if side in terms)
        assert epoch["loss"] == pytest.approx(expected, rel=1e-5), (row, epoch)
    if row != "K":  # and the switch changed what was learned
        full, ablated = runs["K"].bridge.state_dict(), runs[row].bridge.state_dict()
        assert not all(torch.equal(full[k], ablated[k]) for k in full)


def test_without_completion_noise_the_training_task_is_easier(runs):
    # Row H: no noise on the inputs, so the training losses fall lower than with noise.
    assert runs["H"].history[-1]["ttc"] < 0.9 * runs["K"].history[-1]["ttc"]


def test_renorm_switch_changes_what_the_heads_see(data, quick_config):
    # Row G: without re-normalisation the noisy inputs keep norm sqrt(1 + dim * sigma^2) (~1.2 here).
    seen = {}
    for renorm in (True, False):
        cfg = with_overrides(quick_config, epochs=1, renorm=renorm)
        norms = []
        original = train_module.semantic_completion

        def record(x, *args, original=original, norms=norms, **kwargs):
            out = original(x, *args, **kwargs)
            norms.append(out.norm(dim=-1).mean().item())
            return out

        mp = pytest.MonkeyPatch()
        mp.setattr(train_module, "semantic_completion", record)
        try:
            train_bridge(cfg, data, progress=False)
        finally:
            mp.undo()
        seen[renorm] = float(np.mean(norms))
    dim, var = quick_config.sides[0].dim, quick_config.method.noise_var
    assert seen[True] == pytest.approx(1.0, abs=1e-4)
    assert seen[False] == pytest.approx(np.sqrt(1 + dim * var), rel=0.05)


def test_argmax_consistency_draws_memory_rows_and_softmax_mixes_them(data):
    queries, memory = np.asarray(data.overlap[0][:200]), np.asarray(data.memory[0])
    hard = pseudo_embeddings(queries, memory, 0.01, "argmax")
    soft = pseudo_embeddings(queries, memory, 0.01, "softmax")
    best = (queries @ memory.T).argmax(axis=1)
    np.testing.assert_array_equal(hard, memory[best])
    # Softmax mixes several rows for most captions (its weighted means lie inside the sphere).
    assert np.mean(np.linalg.norm(soft, axis=1) < 0.99) > 0.5


def test_no_inter_mcr_loss_stays_at_chance_row_f(data, synthetic, quick_config):
    cfg = with_overrides(quick_config, ttc=False, avc=False, epochs=2)
    result = train_bridge(cfg, data, progress=False)
    chance = chance_scores(synthetic.test_audio_b.shape[0])
    assert score_bridge_on(synthetic, result.bridge)[0].mAP < 3 * chance.mAP
    assert all(row["loss"] == pytest.approx(0.1 * row["intra"], rel=1e-5) for row in result.history)


def test_history_metrics_and_held_out_scores_are_recorded(runs):
    result = runs["K"]
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.history[-1]["heldout_loss"] < result.history[0]["heldout_loss"]
    meta = result.bridge.meta
    assert meta.data_fingerprint and meta.hyper["method"]["tau1"] == 0.01
    assert meta.metrics["pairs"] + meta.metrics["heldout_pairs"] == 3000 and meta.metrics["heldout_pairs"] == 300
    assert meta.metrics["steps"] == 2 * 6 and set(meta.metrics["heldout"]) >= {"ttc", "avc", "intra", "loss"}
    assert not result.bridge.training


def test_same_seed_gives_identical_weights_and_another_seed_does_not(data, quick_config):
    cfg = with_overrides(quick_config, epochs=1)
    a, b = (train_bridge(cfg, data, progress=False).bridge.state_dict() for _ in range(2))
    c = train_bridge(with_overrides(cfg, seed=1), data, progress=False).bridge.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


class _Interrupted(Exception):
    pass


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(data, quick_config, tmp_path):
    cfg = with_overrides(quick_config, epochs=3)
    whole = train_bridge(cfg, data, progress=False, checkpoint=tmp_path / "whole.ckpt")

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        train_bridge(cfg, data, progress=False, checkpoint=tmp_path / "cut.ckpt", on_epoch=stop_after_two)
    resumed = train_bridge(cfg, data, progress=False, checkpoint=tmp_path / "cut.ckpt", resume=True)
    a, b = whole.bridge.state_dict(), resumed.bridge.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.history[-1]["loss"] == whole.history[-1]["loss"]


def test_a_checkpoint_of_another_config_or_data_is_refused(data, quick_config, tmp_path):
    cfg = with_overrides(quick_config, epochs=1)
    train_bridge(cfg, data, progress=False, checkpoint=tmp_path / "c.ckpt")
    with pytest.raises(InputError, match=r"another config \(optim.lr differ\)"):
        train_bridge(with_overrides(cfg, lr=5e-3), data, progress=False, checkpoint=tmp_path / "c.ckpt", resume=True)
    other = BridgeData(data.overlap, data.memory, fingerprint="other")
    with pytest.raises(InputError, match="other training arrays"):
        train_bridge(cfg, other, progress=False, checkpoint=tmp_path / "c.ckpt", resume=True)


def test_cosine_schedule():
    assert cosine_lr(0, 100, 1e-3) == pytest.approx(1e-3)
    assert cosine_lr(99, 100, 1e-3) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(49, 99, 1e-3) == pytest.approx(5e-4)
    assert cosine_lr(99, 100, 1e-3, min_ratio=0.1) == pytest.approx(1e-4)
