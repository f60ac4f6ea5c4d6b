"""Score calibration: what a cosine score in a bridge's shared space says about "these belong together".

A raw score (0.31) means nothing to a user. A calibration is fitted on pairs that belong together
(positives) against pairs that do not (every other pairing of the same items: negatives), and stores:
- a monotone map from score to the probability that a pair with this score is a true pair (isotonic
  regression, sklearn), on a *balanced* set: true and unrelated pairs weighted equally. In a search,
  most candidates are unrelated, so read it as "how much this looks like a true pair", not as the chance
  that a given hit is right;
- the scores from which that probability (the precision of pairs scoring there) reaches 0.9 and 0.5:
  above the 0.5 level a pair is more likely true than unrelated, and `--min-score auto` cuts there. (A
  precision over all pairs scoring *at least* t would be no cut-off at 0.5: on a balanced set it stays
  at or above 0.5 down to the lowest score, so the local precision is used.)
Where it came from is part of it: "pseudo pairs" (made at the end of `avsearch train` from held-out
captions: the pseudo sound against the pseudo picture of one caption, the closest thing to audio-image
pairs that C-MCR has, as the paper's table 3 uses them), or "N real pairs" (`avsearch calibrate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from avsearch.errors import InputError

PSEUDO = "pseudo pairs"
PRECISION_LEVELS = (0.9, 0.5)
_KNOTS = 64  # points of the stored score -> probability map (linear between them)
MIN_PAIRS = 8  # fewer positives than this say nothing reliable
MAX_PSEUDO_PAIRS = 4000  # held-out captions scored at most (their negatives: 16M scores)


def pair_key(a: str, b: str) -> str:
    """The key of a modality pair in a bridge's calibrations: the two names sorted, e.g. 'audio|image'."""
    return "|".join(sorted((a, b)))


@dataclass(frozen=True)
class Calibration:
    source: str  # PSEUDO, or "N real pairs"
    pairs: int  # positives it was fitted on
    scores: tuple[float, ...]  # increasing knots of the score -> probability map
    probabilities: tuple[float, ...]  # non-decreasing probability at each knot
    score_at_90: float | None  # lowest score where the probability reaches 0.9 (None: never reached)
    score_at_50: float | None  # the same for 0.5: `--min-score auto` cuts here

    def probability(self, scores: np.ndarray | float) -> np.ndarray:
        """P(true pair | score) on a balanced set, for each score (clamped outside the fitted range)."""
        return np.interp(np.asarray(scores, np.float64), self.scores, self.probabilities)

    def describe(self) -> str:
        levels = ", ".join(
            f"precision {p:.1f} from score {s:.3f}" if s is not None else f"precision {p:.1f} never reached"
            for p, s in zip(PRECISION_LEVELS, (self.score_at_90, self.score_at_50), strict=True)
        )
        return f"calibrated from {self.source}: {levels}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        try:
            return cls(
                source=str(d["source"]),
                pairs=int(d["pairs"]),
                scores=tuple(float(x) for x in d["scores"]),
                probabilities=tuple(float(x) for x in d["probabilities"]),
                score_at_90=None if d.get("score_at_90") is None else float(d["score_at_90"]),
                score_at_50=None if d.get("score_at_50") is None else float(d["score_at_50"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed score calibration ({exc})") from None


def pair_scores(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) cosine scores of row-aligned unit vectors: a[i]·b[i], and a[i]·b[j] for j != i."""
    sims = np.asarray(a, np.float64) @ np.asarray(b, np.float64).T
    n = sims.shape[0]
    off = ~np.eye(n, dtype=bool)
    return np.diag(sims).copy(), sims[off]


def fit_calibration(positives: np.ndarray, negatives: np.ndarray, source: str) -> Calibration:
    """Fit a Calibration on positive and negative pair scores, the two classes weighted equally."""
    from sklearn.isotonic import IsotonicRegression

    pos, neg = np.asarray(positives, np.float64).ravel(), np.asarray(negatives, np.float64).ravel()
    if pos.size < MIN_PAIRS or neg.size < 1:
        raise InputError(f"a calibration needs at least {MIN_PAIRS} pairs, got {pos.size}")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise InputError("a calibration needs finite scores")
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    weights = np.concatenate([np.full(pos.size, 0.5 / pos.size), np.full(neg.size, 0.5 / neg.size)])
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(scores, labels, sample_weight=weights)
    # Knots where either class has its mass (quantiles of each): the map is exact at the knots.
    grid = np.linspace(0.0, 1.0, _KNOTS)
    knots = np.unique(np.concatenate([np.quantile(pos, grid), np.quantile(neg, grid)]))
    probs = np.maximum.accumulate(np.clip(iso.predict(knots), 0.0, 1.0))
    at = {p: score_at_probability(knots, probs, p) for p in PRECISION_LEVELS}
    return Calibration(
        source=source,
        pairs=int(pos.size),
        scores=tuple(map(float, knots)),
        probabilities=tuple(map(float, probs)),
        score_at_90=at[0.9],
        score_at_50=at[0.5],
    )


def score_at_probability(scores: np.ndarray, probabilities: np.ndarray, level: float) -> float | None:
    """The lowest score at which the (monotone, piecewise-linear) map reaches `level`; None if it never does."""
    scores, probabilities = np.asarray(scores, np.float64), np.asarray(probabilities, np.float64)
    reached = np.flatnonzero(probabilities >= level)
    if reached.size == 0:
        return None
    i = int(reached[0])
    if i == 0 or probabilities[i] == probabilities[i - 1]:
        return float(scores[i])
    share = (level - probabilities[i - 1]) / (probabilities[i] - probabilities[i - 1])
    return float(scores[i - 1] + share * (scores[i] - scores[i - 1]))


def pseudo_calibration(
    project: Callable[[int, np.ndarray], np.ndarray], pseudo: Sequence[np.ndarray], rows: np.ndarray, seed: int
) -> Calibration | None:
    """The calibration from held-out captions' pseudo pairs: pseudo[i][rows] are side i's pseudo media of
    those captions, project(i, x) their shared-space vectors. At most MAX_PSEUDO_PAIRS rows (a seeded
    sample: the negatives grow as its square); None when fewer than MIN_PAIRS rows are held out."""
    rows = np.asarray(rows)
    if rows.size < MIN_PAIRS:
        return None
    if rows.size > MAX_PSEUDO_PAIRS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, MAX_PSEUDO_PAIRS, replace=False))
    a, b = (project(i, np.asarray(pseudo[i][rows])) for i in (0, 1))
    return fit_calibration(*pair_scores(a, b), PSEUDO)
