import numpy as np
import pytest

from avsearch.errors import InputError
from avsearch.evaluation.retrieval import chance_scores, match_ranks, retrieval_metrics, scores_from_ranks


def test_random_embeddings_land_on_the_papers_random_row_for_n_4095():
    # Paper table 1, AVE random row: mAP 0.25, R@1 0.02, R@5 0.12 (percent). One draw of N = 4,095 has
    # a standard deviation of about 0.03 on mAP and 0.024 on R@1 (a Poisson(1) count of hits), so
    # average 16 draws (standard errors 0.008 and 0.006) and compare within about three of them.
    rng = np.random.default_rng(0)
    runs = [retrieval_metrics(rng.standard_normal((4095, 32)), rng.standard_normal((4095, 32))) for _ in range(16)]
    for direction in ("q2g", "g2q"):
        mean = {k: np.mean([getattr(r[direction], k) for r in runs]) for k in ("mAP", "R1", "R5")}
        assert mean["mAP"] == pytest.approx(0.25, abs=0.05)
        assert mean["R1"] == pytest.approx(0.02, abs=0.02)
        assert mean["R5"] == pytest.approx(0.12, abs=0.04)
    chance = chance_scores(4095)
    assert chance.mAP == pytest.approx(0.217, abs=1e-3) and chance.R5 == pytest.approx(0.122, abs=1e-3)


def test_ranks_on_a_hand_made_example():
    q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    g = np.array([[1.0, 0.1], [1.0, 0.0], [1.0, 1.0]])
    # q0 prefers g1, so its match g0 ranks 2; q1 scores g2 and g0 above its match g1, so g1 ranks 3;
    # q2 ranks its match g2 first.
    np.testing.assert_array_equal(match_ranks(q, g), [2, 3, 1])
    s = scores_from_ranks(np.array([2, 3, 1]))
    assert s.mAP == pytest.approx((1 / 2 + 1 / 3 + 1) / 3 * 100)
    assert (s.R1, s.R5) == (pytest.approx(100 / 3), 100.0)


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
