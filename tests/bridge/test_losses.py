import math

import pytest
import torch
import torch.nn.functional as F

from avsearch.bridge.losses import info_nce, intra_alignment, semantic_completion


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_info_nce_matches_equation_5_written_out():
    a, b, tau = _unit(6, 8, 0), _unit(6, 8, 1), 0.05
    sim = a @ b.T / tau
    expected = 0.0
    for i in range(6):
        expected -= math.log(math.exp(sim[i, i]) / torch.exp(sim[i]).sum()) / 12
        expected -= math.log(math.exp(sim[i, i]) / torch.exp(sim[:, i]).sum()) / 12
    assert info_nce(a, b, tau).item() == pytest.approx(expected, rel=1e-5)


def test_info_nce_is_symmetric_and_low_for_aligned_pairs():
    a, b = _unit(32, 16, 2), _unit(32, 16, 3)
    assert info_nce(a, b, 0.1).item() == pytest.approx(info_nce(b, a, 0.1).item(), rel=1e-6)
    assert info_nce(a, a, 0.01).item() < 0.01 < info_nce(a, b, 0.01).item()


def test_intra_alignment_is_mean_l2_distance():
    x, y = _unit(10, 4, 4), _unit(10, 4, 5)
    assert intra_alignment(x, y).item() == pytest.approx((x - y).norm(dim=1).mean().item())
    assert intra_alignment(x, x).item() == 0.0


def test_semantic_completion_noise_has_the_configured_variance_and_is_renormalised():
    x = torch.zeros(20000, 64)
    noisy = semantic_completion(x, 0.004, noise=True, renorm=False, generator=torch.Generator().manual_seed(0))
    assert noisy.var().item() == pytest.approx(0.004, rel=0.05)
    unit = _unit(100, 64, 6)
    renormed = semantic_completion(unit, 0.004, noise=True, renorm=True, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(renormed.norm(dim=1), torch.ones(100), atol=1e-5)
    assert not torch.allclose(renormed, unit)


def test_semantic_completion_switches():
    x = _unit(8, 16, 7) * 2  # not unit length, so renorm is visible
    assert torch.equal(semantic_completion(x, 0.004, noise=False, renorm=False, generator=None), x)
    assert torch.allclose(semantic_completion(x, 0.004, noise=False, renorm=True, generator=None), x / 2)


def test_noise_is_fresh_each_call_but_seeded():
    x = _unit(4, 16, 8)
    g = torch.Generator().manual_seed(1)
    first, second = (semantic_completion(x, 0.01, noise=True, renorm=True, generator=g) for _ in range(2))
    assert not torch.equal(first, second)
    again = semantic_completion(x, 0.01, noise=True, renorm=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
