import math

import numpy as np
import pytest

from avsearch.errors import InputError
from avsearch.evaluation.retrieval import chance_scores, match_ranks, retrieval_metrics, scores_from_ranks

N_AVE = 4095  # AVE's audio-image pairs (paper table 1)


def test_random_embeddings_land_on_the_exact_chance_row_for_n_4095():
    # Exact chance with one relevant item: its rank R is uniform on 1..N, so mAP = E[1/R] = H_N / N
    # (0.217 %; the paper's random row prints 0.25) and R@k = k / N. A draw's mAP averages N reciprocal
    # ranks of variance H2_N / N - (H_N / N)^2, a spread of 0.031 points; its queries share one gallery,
    # but in 32 dimensions that barely matters (64 draws measured 0.0312). Only q2g is drawn: g2q
    # correlates 0.89 with it, doubling the cost for little precision.
    n, draws = N_AVE, 20
    rng = np.random.default_rng(0)
    runs = [
        scores_from_ranks(match_ranks(rng.standard_normal((n, 32)), rng.standard_normal((n, 32)))) for _ in range(draws)
    ]
    harmonic = math.fsum(1 / k for k in range(1, n + 1))
    harmonic2 = math.fsum(1 / k**2 for k in range(1, n + 1))
    expected = {"mAP": 100 * harmonic / n, "R1": 100 / n, "R5": 500 / n, "R10": 1000 / n}
    per_draw_sd = {"mAP": 100 * math.sqrt((harmonic2 / n - (harmonic / n) ** 2) / n)}
    for key, k in (("R1", 1), ("R5", 5), ("R10", 10)):  # share of n Bernoulli(k / n) hits
        per_draw_sd[key] = 100 * math.sqrt(k / n * (1 - k / n) / n)
    for key, value in expected.items():
        values = np.array([getattr(r, key) for r in runs])
        standard_error = per_draw_sd[key] / math.sqrt(draws)
        assert abs(values.mean() - value) < 3 * standard_error, (key, values.mean(), value, standard_error)
        # The spread across draws confirms the independence the standard error assumes.
        assert 0.6 < values.std(ddof=1) / per_draw_sd[key] < 1.6, (key, values.std(ddof=1), per_draw_sd[key])
    assert round(expected["mAP"], 3) == 0.217 and round(expected["R5"], 3) == 0.122
    assert chance_scores(n).to_dict() == pytest.approx(expected | {"n": n}, rel=1e-12)


def test_ranks_on_a_hand_made_example():
    q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    g = np.array([[1.0, 0.1], [1.0, 0.0], [1.0, 1.0]])
    # q0 prefers g1, so its match g0 ranks 2; q1 scores g2 and g0 above its match g1, so g1 ranks 3;
    # q2 ranks its match g2 first.
    np.testing.assert_array_equal(match_ranks(q, g), [2, 3, 1])
    s = scores_from_ranks(np.array([2, 3, 1]))
    assert s.mAP == pytest.approx((1 / 2 + 1 / 3 + 1) / 3 * 100)
    assert (s.R1, s.R5) == (pytest.approx(100 / 3), 100.0)
    # The other direction ranks the queries for each gallery item: g0 ranks q0 first, g1 (orthogonal to
    # its match q1) ranks q0 and q2 ahead of it, g2 ranks q2 first.
    both = retrieval_metrics(q, g)
    assert both["q2g"] == s
    assert both["g2q"] == scores_from_ranks(np.array([1, 3, 1]))


def test_perfect_and_degenerate_retrieval():
    x = np.eye(50)
    assert retrieval_metrics(x, x)["q2g"].mAP == 100.0
    constant = np.ones((50, 4))
    assert retrieval_metrics(constant, constant)["q2g"].R1 == 0.0  # ties never count in the model's favour


def test_blocks_do_not_change_ranks(monkeypatch):
    from avsearch.evaluation import retrieval

    rng = np.random.default_rng(1)
    q, g = rng.standard_normal((300, 8)), rng.standard_normal((300, 8))
    full = match_ranks(q, g)
    monkeypatch.setattr(retrieval, "BLOCK", 7)
    np.testing.assert_array_equal(match_ranks(q, g), full)


def test_mismatched_shapes_are_an_error():
    with pytest.raises(InputError, match="paired rows"):
        match_ranks(np.zeros((3, 2)), np.zeros((4, 2)))
