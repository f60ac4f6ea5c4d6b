"""Test data: vectors with a modality gap (test-only; no product code uses this).

Indexed vectors and query vectors share concept centres but sit in two different cones (each side is
shifted along its own gap direction), like CLIP image vs text embeddings: queries fall outside the
data's clusters, which is what makes cross-modal ANN search harder than same-modality search.
"""

from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def gap_data(
    n: int, m: int, dim: int = 64, concepts: int = 200, gap: float = 1.0, noise: float = 0.6, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(data (n, dim), cross-modal queries (m, dim)), both float32 with unit rows."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((concepts, dim)))
    g_data, g_query = _unit(rng.standard_normal((2, dim)))
    data = centres[rng.integers(concepts, size=n)] + gap * g_data
    data += noise * rng.standard_normal((n, dim)) / np.sqrt(dim)
    queries = centres[rng.integers(concepts, size=m)] + gap * g_query
    queries += noise * rng.standard_normal((m, dim)) / np.sqrt(dim)
    return _unit(data), _unit(queries)
