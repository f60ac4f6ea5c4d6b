"""Localisation and counterfactual metrics against hand-computed cases (paper tables 2 and 3)."""

from __future__ import annotations

import numpy as np
import pytest

from avsearch.localize import metrics as m


def test_box_mask_truncates_like_the_reference_evaluators() -> None:
    mask = m.box_mask([10, 20, 30, 40], 224, 224)
    assert mask.sum() == 20 * 20 and mask[20, 10] == 1 and mask[40, 30] == 0
    # A 448-pixel picture maps onto the 224 raster at half scale; int() truncates 0.5 cells away.
    assert m.box_mask([3, 3, 6, 6], 448, 448).sum() == 2 * 2  # cells 1.5 -> 1 and 3: rows and columns 1, 2


def test_ciou_perfect_disjoint_and_half_overlap() -> None:
    gt = m.ground_truth_map([[0, 0, 100, 100]], 224, 224)
    assert m.ciou(m.box_mask([0, 0, 100, 100], 224, 224), gt) == 1.0  # perfect
    assert m.ciou(m.box_mask([120, 120, 220, 220], 224, 224), gt) == 0.0  # disjoint
    # Half of the ground truth, nothing outside it: 5000 / (10000 + 0).
    assert m.ciou(m.box_mask([0, 0, 50, 100], 224, 224), gt) == 0.5
    # Same size shifted by half: 5000 inside / (10000 + 5000 outside) = 1/3.
    assert m.ciou(m.box_mask([50, 0, 150, 100], 224, 224), gt) == pytest.approx(1 / 3)


def test_consensus_map_of_several_annotators() -> None:
    # Two annotators agree on [0, 50) x [0, 100); one box alone covers [50, 100): weight 0.5 there.
    gt = m.ground_truth_map([[0, 0, 100, 100], [0, 0, 50, 100]], 224, 224, consensus=True)
    assert gt[10, 10] == 1.0 and gt[10, 75] == 0.5 and gt[150, 150] == 0.0
    # Predicting the agreed half: 5000 / (5000 + 2500) = 2/3.
    assert m.ciou(m.box_mask([0, 0, 50, 100], 224, 224), gt) == pytest.approx(2 / 3)
    union = m.ground_truth_map([[0, 0, 100, 100], [0, 0, 50, 100]], 224, 224)
    assert union.max() == 1.0 and union.sum() == 100 * 100


def test_success_rate_and_auc() -> None:
    assert m.success_rate([0.5, 0.49, 1.0, 0.0]) == 0.5  # >= 0.5 counts
    # One cIoU of 0.5: rate 1 at thresholds 0..0.5 (area 0.5), 0 from 0.55 (one trapezoid of 0.025).
    assert m.auc([0.5]) == pytest.approx(0.525)
    assert m.auc([1.0, 1.0]) == pytest.approx(1.0)
    assert m.auc([0.0]) == pytest.approx(0.025)  # success at threshold 0 only


# A: located (cIoU .8) conf .9; B: mislocated (.2) conf .8; N: negative conf .7; C: located (.8) conf .6.
HAS_GT = [True, True, False, True]
CIOU = [0.8, 0.2, 0.0, 0.8]
CONF = [0.9, 0.8, 0.7, 0.6]


def test_precision_recall_at_every_threshold_by_hand() -> None:
    assert m.precision_recall(HAS_GT, CIOU, CONF, 0.9) == (1.0, pytest.approx(1 / 3))  # A; B, C missed
    assert m.precision_recall(HAS_GT, CIOU, CONF, 0.8) == (0.5, 0.5)  # B in the wrong place: FP
    assert m.precision_recall(HAS_GT, CIOU, CONF, 0.7) == (pytest.approx(1 / 3), 0.5)  # the negative: FP
    assert m.precision_recall(HAS_GT, CIOU, CONF, 0.6) == (0.5, 1.0)
    assert m.precision_recall(HAS_GT, CIOU, CONF, 0.95) == (1.0, 0.0)  # nothing said: precision 1 (SLAVC)


def test_max_f1_and_its_threshold() -> None:
    # F1 per threshold: .9 -> 1/2, .8 -> 1/2, .7 -> 2/5, .6 -> 2/3.
    best, delta = m.max_f1(HAS_GT, CIOU, CONF)
    assert best == pytest.approx(2 / 3) and delta == 0.6


def test_average_precision_both_protocols_by_hand() -> None:
    # all-points: (P, R) = (1, 1/3), (1/2, 1/2), (1/3, 1/2), (1/2, 1); envelope 1, 1/2, 1/2, 1/2;
    # area 1/3 * 1 + 1/6 * 1/2 + 0 + 1/2 * 1/2 = 2/3.
    assert m.average_precision(HAS_GT, CIOU, CONF, protocol="all-points") == pytest.approx(2 / 3)
    # slavc: thresholds .8, .7, .6 (the largest left out): envelope 1/2 each; area 1/2 * (1 - 1/2) = 1/4.
    assert m.average_precision(HAS_GT, CIOU, CONF, protocol="slavc") == pytest.approx(0.25)


def test_negatives_are_false_positives_at_every_threshold() -> None:
    # Only negatives: anything said is a false positive, so precision 0 and F1 0 at every threshold.
    has_gt, cious, conf = [False] * 3, [0.0] * 3, [0.9, 0.5, 0.1]
    for delta in conf:
        assert m.precision_recall(has_gt, cious, conf, delta)[0] == 0.0
    assert m.max_f1(has_gt, cious, conf)[0] == 0.0
    assert m.average_precision(has_gt, cious, conf, protocol="all-points") == 0.0
    # Negatives below every located positive cost nothing; one above the positives costs precision.
    assert m.max_f1([True, True, False], [0.9, 0.9, 0.0], [0.8, 0.7, 0.1])[0] == 1.0
    assert m.average_precision([True, True, False], [0.9, 0.9, 0.0], [0.8, 0.7, 0.1], protocol="all-points") == 1.0
    ap = m.average_precision([True, True, False], [0.9, 0.9, 0.0], [0.8, 0.7, 0.95], protocol="all-points")
    # (P, R): .95 -> (0, 0), .8 -> (1/2, 1/2), .7 -> (2/3, 1); envelope 2/3 throughout: area 2/3.
    assert ap == pytest.approx(2 / 3)


def test_slavc_ap_matches_a_direct_transcription_of_its_loop() -> None:
    rng = np.random.default_rng(0)
    n = 450  # above 200: SLAVC samples every (n // 200)-th threshold
    has_gt = rng.random(n) < 0.6
    cious = np.where(has_gt, rng.random(n), 0.0)
    conf = rng.random(n) + 0.3 * has_gt
    thresholds = np.sort(conf)[:-1][:: -max(1, n // 200)]
    pr = [m.precision_recall(has_gt, cious, conf, t) for t in thresholds]
    p, r = [x for x, _ in pr], [y for _, y in pr]
    expected = sum(max(p[i:]) * (r[i + 1] - r[i]) for i in range(len(p) - 1))
    assert m.average_precision(has_gt, cious, conf, protocol="slavc") == pytest.approx(expected)
