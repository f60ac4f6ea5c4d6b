"""The synthetic check of the method (issue 3, item 8) and the training loop's contracts."""

import numpy as np
import pytest
import torch

from avsearch.bridge.config import with_overrides
from avsearch.bridge.data import load_bridge_data
from avsearch.bridge.train import cosine_lr, train_bridge
from avsearch.evaluation.retrieval import chance_scores, retrieval_metrics


def _a2i(bridge, synthetic):
    audio = bridge.project("clap", synthetic.test_audio_b)
    image = bridge.project("clip", synthetic.test_image_a)
    return retrieval_metrics(audio, image)["q2g"]


@pytest.fixture(scope="module")
def trained(synthetic_dir, synthetic, request):
    from avsearch.bridge.config import load_train_config

    cfg = with_overrides(load_train_config("audio_visual"), epochs=4, batch_size=512)
    result = train_bridge(cfg, load_bridge_data(synthetic_dir, cfg), progress=False)
    return cfg, result


def test_trained_bridge_retrieves_far_above_chance_while_unconnected_spaces_sit_at_chance(trained, synthetic):
    _, result = trained
    chance = chance_scores(synthetic.test_audio_b.shape[0])
    unconnected = retrieval_metrics(synthetic.test_audio_b, synthetic.test_image_a)["q2g"]
    assert unconnected.mAP < 3 * chance.mAP
    assert _a2i(result.bridge, synthetic).mAP > 20 * chance.mAP


def test_no_inter_mcr_loss_stays_at_chance_row_f(synthetic_dir, synthetic, quick_config):
    cfg = with_overrides(quick_config, ttc=False, avc=False)
    result = train_bridge(cfg, load_bridge_data(synthetic_dir, cfg), progress=False)
    chance = chance_scores(synthetic.test_audio_b.shape[0])
    assert _a2i(result.bridge, synthetic).mAP < 3 * chance.mAP
    assert all(row["ttc"] == 0 and row["avc"] == 0 for row in result.history)


def test_loss_falls_and_history_and_metrics_are_recorded(trained):
    cfg, result = trained
    assert len(result.history) == cfg.optim.epochs
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.samples_per_s > 0
    meta = result.bridge.meta
    assert meta.data_fingerprint and meta.hyper["method"]["tau1"] == 0.01
    assert meta.metrics["pairs"] == 3000 and meta.metrics["steps"] == cfg.optim.epochs * 6
    assert not result.bridge.training


def test_same_seed_gives_identical_weights_and_another_seed_does_not(synthetic_dir, quick_config):
    cfg = with_overrides(quick_config, epochs=1)
    data = load_bridge_data(synthetic_dir, cfg)
    a, b = (train_bridge(cfg, data, progress=False).bridge.state_dict() for _ in range(2))
    c = train_bridge(with_overrides(cfg, seed=1), data, progress=False).bridge.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(
    ("overrides", "zero_terms"),
    [
        ({"ttc": False}, {"ttc"}),  # row D
        ({"avc": False}, {"avc"}),  # row E
        ({"intra": ("none",)}, {"intra"}),  # row C
        ({"intra": ("clip",)}, set()),  # row A
        ({"renorm": False}, set()),  # row G
        ({"noise": False, "renorm": False}, set()),  # row H
        ({"mode": "argmax"}, set()),  # row I
        ({"mode": "random"}, set()),  # row J
    ],
)
def test_every_ablation_switch_trains_and_zeroes_its_term(synthetic_dir, quick_config, overrides, zero_terms):
    cfg = with_overrides(quick_config, epochs=1, **overrides)
    result = train_bridge(cfg, load_bridge_data(synthetic_dir, cfg), progress=False)
    row = result.history[0]
    for term in ("ttc", "avc", "intra"):
        assert (row[term] == 0) == (term in zero_terms), (term, row)
    assert np.isfinite(row["loss"])


def test_intra_switch_per_side_changes_the_intra_term(synthetic_dir, quick_config):
    data = load_bridge_data(synthetic_dir, quick_config)
    both, clip_only = (
        train_bridge(with_overrides(quick_config, epochs=1, intra=s), data, progress=False).history[0]["intra"]
        for s in (("clip", "clap"), ("clip",))
    )
    assert 0 < clip_only < both


def test_cosine_schedule():
    assert cosine_lr(0, 100, 1e-3) == pytest.approx(1e-3)
    assert cosine_lr(99, 100, 1e-3) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(49, 99, 1e-3) == pytest.approx(5e-4)
    assert cosine_lr(99, 100, 1e-3, min_ratio=0.1) == pytest.approx(1e-4)
