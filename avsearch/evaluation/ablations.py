"""The paper's table 5 as data: each ablation row is a set of config overrides on the full method (K).

Used by `benchmarks/ablations.py` (the table with seed spread) and by the tests that defend the
method's quality; `avsearch train`'s flags reach every row (README).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from avsearch.bridge.config import TrainConfig, with_overrides
from avsearch.bridge.data import BridgeData
from avsearch.bridge.synthetic import SyntheticData
from avsearch.bridge.train import train_bridge
from avsearch.evaluation.retrieval import RetrievalScores, retrieval_metrics

# Table 5 rows: (description, overrides). K is the full method.
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "A": ("intra CLIP only", {"intra": ("clip",)}),
    "B": ("intra CLAP only", {"intra": ("clap",)}),
    "C": ("no intra-MCR", {"intra": ("none",)}),
    "D": ("no L_ttc", {"ttc": False}),
    "E": ("no L_avc", {"avc": False}),
    "F": ("no inter-MCR (no L_ttc, no L_avc)", {"ttc": False, "avc": False}),
    "G": ("no re-normalisation", {"renorm": False}),
    "H": ("no noise, no re-normalisation", {"noise": False, "renorm": False}),
    "I": ("argmax consistency", {"mode": "argmax"}),
    "J": ("random consistency", {"mode": "random"}),
    "K": ("full method", {}),
}
# Not a table-5 row: the full method with one blend of BatchNorm statistics for all inputs, as
# avsearch trained before per-kind statistics and calibration (the released heads' layout).
SHARED_STATS = "K-shared"


@dataclass(frozen=True)
class RowResult:
    row: str
    a2i: RetrievalScores  # audio -> image
    i2a: RetrievalScores  # image -> audio
    history: list[dict[str, float]]


def narrow(cfg: TrainConfig, dim: int) -> TrainConfig:
    """`cfg` for spaces `dim` wide (both sides and the heads' input and output): synthetic worlds
    narrower than CLIP's 512 train in seconds on a CPU with the same method."""
    sides = tuple(replace(s, dim=dim) for s in cfg.sides)
    return replace(cfg, sides=sides, head=replace(cfg.head, in_dim=dim, out_dim=dim))  # type: ignore[arg-type]


def row_config(base: TrainConfig, row: str) -> TrainConfig:
    """The config of one table-5 row (or SHARED_STATS) derived from the full method's `base`."""
    if row == SHARED_STATS:
        return replace(base, head=replace(base.head, norm_stats="shared"))
    return with_overrides(base, **ROWS[row][1])


def score_bridge_on(data: SyntheticData, bridge: Any) -> tuple[RetrievalScores, RetrievalScores]:
    """Instance-level audio -> image and image -> audio retrieval of the synthetic test pairs."""
    audio = bridge.project("clap", data.test_audio_b, modality="audio")
    image = bridge.project("clip", data.test_image_a, modality="image")
    scores = retrieval_metrics(audio, image)
    return scores["q2g"], scores["g2q"]


def run_row(row: str, base: TrainConfig, data: SyntheticData) -> RowResult:
    """Train the bridge of `row` from scratch on the synthetic spaces and score it."""
    bundle = BridgeData((data.text_a, data.text_b), (data.image_a, data.audio_b), fingerprint="synthetic")
    result = train_bridge(row_config(base, row), bundle, progress=False)
    return RowResult(row, *score_bridge_on(data, result.bridge), result.history)
