"""Localisation and counterfactual-recognition metrics of the C-MCR paper's tables 2 and 3.

Sources followed (the paper, section 4.3.3-4.3.4 and B.2-B.3, says it follows [28, 69]):
- cIoU (Senocak et al. 2018; the evaluator of Chen et al. 2021, "Localizing Visual Sounds the Hard Way",
  reused by EZ-VSL and SLAVC): on a grid x grid raster of the picture (224),
  cIoU = sum(P * G) / (sum(G) + sum(P * [G == 0])), P the binary prediction (here the best proposal's
  box), G the ground-truth map: the union of the boxes (VGGSS, MUSIC), or Flickr-SoundNet's consensus of
  annotators (each box adds 1, the sum halved and capped at 1). Table 2's "cIoU" is the success rate
  mean(cIoU >= 0.5); its "AUC" the area under success rate vs threshold at 0, 0.05, ..., 1 (trapezoid).
- Counterfactual recognition (paper eq. 11-13, Mo & Morgado's SLAVC evaluator): a true positive has a
  ground truth, confidence >= delta and cIoU >= 0.5; a false positive has confidence >= delta and either
  no ground truth or cIoU < 0.5; a false negative has a ground truth and confidence < delta. Precision
  is 1 with no prediction, recall is 1 with no positive (SLAVC's conventions). Eq. 11 writes strict
  inequalities; SLAVC's code, which the reported numbers come from, uses >=, and so does avsearch.
- Max-F1: the best F1 over every confidence threshold (B.3: "for all values of delta"; SLAVC's code
  samples about 10 of them). AP: "slavc" reproduces SLAVC's calc_ap; "all-points" is the usual
  interpolated-precision area over every threshold, from recall 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GRID = 224


def box_mask(box: Sequence[float], width: float, height: float, grid: int = GRID) -> np.ndarray:
    """A box [x0, y0, x1, y1] in pixels of a width x height picture as a binary grid x grid map.

    Corners scale to the grid and are truncated to whole cells, as the reference evaluators do
    (`int(224 * x)`), so a box exactly covering a region of the picture covers the same cells as the
    ground truth drawn from it.
    """
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    sx, sy = grid / width, grid / height
    c0, c1 = (int(max(0.0, min(grid, v))) for v in (x0 * sx, x1 * sx))
    r0, r1 = (int(max(0.0, min(grid, v))) for v in (y0 * sy, y1 * sy))
    mask = np.zeros((grid, grid), np.float64)
    mask[r0:r1, c0:c1] = 1.0
    return mask


def ground_truth_map(
    boxes: Sequence[Sequence[float]], width: float, height: float, grid: int = GRID, consensus: bool = False
) -> np.ndarray:
    """Ground-truth map of a picture: union of the boxes, or (consensus) Flickr-SoundNet's annotator
    consensus: each box adds 1, the sum is halved and capped at 1. No boxes: all zero (a negative)."""
    gt = np.zeros((grid, grid), np.float64)
    for box in boxes:
        gt += box_mask(box, width, height, grid)
    if consensus:
        return np.minimum(gt / 2.0, 1.0)
    return (gt > 0).astype(np.float64)


def ciou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Consensus IoU of a binary prediction map and a ground-truth map; 0 when both are empty."""
    pred = (np.asarray(pred) > 0).astype(np.float64)
    denom = float(gt.sum() + (pred * (gt == 0)).sum())
    return float((pred * gt).sum() / denom) if denom > 0 else 0.0


def success_rate(cious: Sequence[float], threshold: float = 0.5) -> float:
    """Fraction of localisations with cIoU >= threshold (table 2's "cIoU")."""
    values = np.asarray(cious, np.float64)
    return float(np.mean(values >= threshold)) if values.size else float("nan")


def auc(cious: Sequence[float], steps: int = 21) -> float:
    """Area under success rate vs cIoU threshold at `steps` evenly spaced thresholds in [0, 1] (trapezoid)."""
    values = np.asarray(cious, np.float64)
    if not values.size:
        return float("nan")
    thresholds = np.linspace(0.0, 1.0, steps)
    rates = np.array([np.mean(values >= t) for t in thresholds])
    return float(np.sum((rates[1:] + rates[:-1]) / 2 * np.diff(thresholds)))


def precision_recall(
    has_gt: Sequence[bool], cious: Sequence[float], conf: Sequence[float], delta: float, ciou_thr: float = 0.5
) -> tuple[float, float]:
    """Precision and recall at confidence threshold delta (paper eq. 11 and 13, SLAVC conventions)."""
    pos, iou, c = np.asarray(has_gt, bool), np.asarray(cious, np.float64), np.asarray(conf, np.float64)
    said = c >= delta
    tp = int(np.sum(pos & said & (iou >= ciou_thr)))
    fp = int(np.sum(said & ~pos)) + int(np.sum(pos & said & (iou < ciou_thr)))
    fn = int(np.sum(pos & ~said))
    precision = 1.0 if tp + fp == 0 else tp / (tp + fp)
    recall = 1.0 if tp + fn == 0 else tp / (tp + fn)
    return precision, recall


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def max_f1(
    has_gt: Sequence[bool], cious: Sequence[float], conf: Sequence[float], ciou_thr: float = 0.5
) -> tuple[float, float]:
    """(Max-F1, the confidence threshold delta that reaches it) over every confidence in the set."""
    best, best_delta = 0.0, float("nan")
    for delta in np.unique(np.asarray(conf, np.float64))[::-1]:
        f1 = _f1(*precision_recall(has_gt, cious, conf, float(delta), ciou_thr))
        if f1 > best:
            best, best_delta = f1, float(delta)
    return best, best_delta


def average_precision(
    has_gt: Sequence[bool],
    cious: Sequence[float],
    conf: Sequence[float],
    ciou_thr: float = 0.5,
    protocol: str = "slavc",
) -> float:
    """AP of the confidence ranking (table 3). protocol "slavc": SLAVC's calc_ap (thresholds: the sorted
    confidences but the largest, every max(1, N // 200)-th from the top; precision made monotone from
    the right; area from the first threshold's recall on). "all-points": every distinct confidence,
    interpolated precision, area from recall 0."""
    c = np.asarray(conf, np.float64)
    if protocol == "slavc":
        skip = max(1, len(c) // 200)
        thresholds = np.sort(c)[:-1][::-skip]
    elif protocol == "all-points":
        thresholds = np.unique(c)[::-1]
    else:
        raise ValueError(f"unknown AP protocol {protocol!r}")
    if thresholds.size == 0:
        return 0.0
    pr = [precision_recall(has_gt, cious, c, float(t), ciou_thr) for t in thresholds]
    precision = np.array([p for p, _ in pr])
    recall = np.array([r for _, r in pr])
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or beyond
    if protocol == "all-points":
        return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * envelope))
    return float(np.sum(envelope[:-1] * np.diff(recall)))
