"""Score calibration (bridge/confidence.py, bridge/calibrate.py, `avsearch calibrate`): hand-computed
precision levels, the fit on known distributions, the pseudo-pair calibration `train` stores, and a
calibration from real pairs of the synthetic world holding its stated precision on fresh pairs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from typer.testing import CliRunner

from avsearch.bridge.calibrate import calibrate_embeddings, read_csv_pairs, sides_for
from avsearch.bridge.confidence import PSEUDO, fit_calibration, pair_key, pair_scores, score_at_probability
from avsearch.bridge.config import TrainConfig
from avsearch.bridge.io import load_bridge, save_bridge
from avsearch.bridge.synthetic import SyntheticData
from avsearch.bridge.train import train_bridge
from avsearch.cli.app import app
from avsearch.errors import InputError


def test_score_at_probability_by_hand() -> None:
    knots, probs = np.array([0.0, 0.2, 0.4, 0.6]), np.array([0.0, 0.25, 0.75, 1.0])
    assert score_at_probability(knots, probs, 0.5) == pytest.approx(0.3)  # halfway from 0.25 to 0.75
    assert score_at_probability(knots, probs, 0.9) == pytest.approx(0.52)  # 0.75 + 0.6 * 0.25 at 0.4 + 0.6 * 0.2
    assert score_at_probability(knots, probs, 0.0) == 0.0
    assert score_at_probability(knots, probs[:3] * 0.8, 0.9) is None
    flat = np.array([0.0, 0.5, 0.5, 1.0])  # a plateau reaching the level: its first knot
    assert score_at_probability(knots, flat, 0.5) == 0.2


def test_pair_scores_positives_are_the_diagonal() -> None:
    a = np.eye(3)
    b = np.array([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]])
    pos, neg = pair_scores(a, b)
    assert pos.tolist() == [1.0, 0.0, 0.0] and sorted(neg.tolist()) == [0, 0, 0, 0, 1, 1]


def _posterior(s: float, mu_pos: float, mu_neg: float, sd: float) -> float:
    """P(true | s) on a balanced set of two normals: the logistic of the log likelihood ratio."""
    return 1 / (1 + math.exp(-(norm.logpdf(s, mu_pos, sd) - norm.logpdf(s, mu_neg, sd))))


def test_fit_on_known_distributions() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.6, 0.1, 4000), rng.normal(0.2, 0.1, 40000)  # 1:10, weighted back to 1:1
    cal = fit_calibration(pos, neg, "test")
    # The posterior is 0.5 at the midpoint 0.4 and 0.9 where the log likelihood ratio is ln 9:
    # (s - 0.4) * (0.6 - 0.2) / 0.1**2 = ln 9, s = 0.4 + 0.01 ln 9 / 0.4 = 0.4549.
    assert cal.score_at_50 == pytest.approx(0.4, abs=0.02)
    assert cal.score_at_90 == pytest.approx(0.4 + 0.01 * math.log(9) / 0.4, abs=0.02)
    for s in (0.3, 0.4, 0.5):
        assert float(cal.probability(s)) == pytest.approx(_posterior(s, 0.6, 0.2, 0.1), abs=0.05)
    assert np.all(np.diff(cal.probabilities) >= 0)
    assert cal.pairs == 4000 and cal.source == "test"


def test_too_few_pairs_are_refused() -> None:
    with pytest.raises(InputError, match="at least"):
        fit_calibration(np.ones(3), np.zeros(10), "x")


@pytest.fixture(scope="module")
def trained(synthetic_dir: Path, synthetic: SyntheticData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from avsearch.bridge.config import load_train_config, with_overrides
    from avsearch.bridge.data import load_bridge_data
    from avsearch.evaluation import ablations

    from .conftest import DIM

    config: TrainConfig = ablations.narrow(
        with_overrides(load_train_config("audio_visual"), epochs=4, batch_size=512), dim=DIM
    )
    config = with_overrides(config, holdout=0.1)  # 300 held-out captions: a calibration with some support
    result = train_bridge(config, load_bridge_data(synthetic_dir, config), progress=False)
    path = tmp_path_factory.mktemp("calibrated") / "bridge.safetensors"
    save_bridge(result.bridge, path)
    return path


def _test_pairs(path: Path, synthetic: SyntheticData) -> tuple[np.ndarray, np.ndarray]:
    bridge = load_bridge(path)
    a = bridge.project("clip", synthetic.test_image_a, modality="image")
    b = bridge.project("clap", synthetic.test_audio_b, modality="audio")
    return a, b


def test_train_stores_a_pseudo_pair_calibration(trained: Path) -> None:
    meta = load_bridge(trained).meta
    cal = meta.calibration("image", "audio")
    assert cal is not None and cal.source == PSEUDO and cal.pairs == 300
    assert set(meta.calibrations) == {pair_key("audio", "image")}


def _balanced_precision(pos: np.ndarray, neg: np.ndarray, t: float) -> tuple[float, float]:
    """Precision of pairs scoring >= t (classes weighted equally) and its standard error (delta method)."""
    tp, fp = float(np.mean(pos >= t)), float(np.mean(neg >= t))
    p = tp / (tp + fp)
    var_tp, var_fp = tp * (1 - tp) / pos.size, fp * (1 - fp) / neg.size
    se = math.sqrt((fp / (tp + fp) ** 2) ** 2 * var_tp + (tp / (tp + fp) ** 2) ** 2 * var_fp)
    return p, se


def test_real_pair_calibration_holds_its_precision_on_fresh_pairs(trained: Path, synthetic: SyntheticData) -> None:
    bridge = load_bridge(trained)
    half = synthetic.test_image_a.shape[0] // 2
    fitted = calibrate_embeddings(
        bridge, ("image", "audio"), (synthetic.test_image_a[:half], synthetic.test_audio_b[:half])
    )
    assert fitted.source == f"{half} real pairs"
    a, b = _test_pairs(trained, synthetic)
    pos, neg = pair_scores(a[half:], b[half:])  # fresh pairs, never seen by the fit
    for level, t in ((0.9, fitted.score_at_90), (0.5, fitted.score_at_50)):
        assert t is not None
        precision, se = _balanced_precision(pos, neg, t)
        assert precision >= level - 3 * se, (level, t, precision, se)
    # Calibrated probabilities agree with the fresh pairs' frequencies (balanced): mean over positives of
    # P minus mean over negatives of P is the separation the map claims; it must be real on fresh data.
    p_pos, p_neg = fitted.probability(pos), fitted.probability(neg)
    assert 0.5 * (p_pos.mean() + (1 - p_neg).mean()) > 0.75
    pseudo = load_bridge(trained).meta.calibration("audio", "image")
    print(f"score at precision 0.9: real pairs {fitted.score_at_90:.3f}, pseudo pairs {pseudo.score_at_90}")
    print(f"score at precision 0.5: real pairs {fitted.score_at_50:.3f}, pseudo pairs {pseudo.score_at_50}")


def test_cli_calibrate_from_embeddings_replaces_the_pseudo_calibration(
    trained: Path, synthetic: SyntheticData, tmp_path: Path
) -> None:
    folder = tmp_path / "pairs"
    folder.mkdir()
    np.save(folder / "image.clip.npy", synthetic.test_image_a[:200])
    np.save(folder / "audio.clap.npy", synthetic.test_audio_b[:200])
    bridge = tmp_path / "b.safetensors"
    bridge.write_bytes(trained.read_bytes())
    before = load_bridge(bridge)
    r = CliRunner().invoke(app, ["calibrate", "--bridge", str(bridge), "--embeddings", str(folder)])
    assert r.exit_code == 0, r.output
    assert "calibrated from 200 real pairs" in r.output
    after = load_bridge(bridge)
    assert after.fingerprint == before.fingerprint  # same weights: indexes made with it stay valid
    assert after.meta.calibration("audio", "image").source == "200 real pairs"


def test_pairs_csv_and_sides(tmp_path: Path, trained: Path) -> None:
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("audio,image\ndog.wav,dog.jpg\n\ncat.wav, cat.png\n")
    modalities, pairs = read_csv_pairs(csv_file)
    assert modalities == ("audio", "image") and pairs[1] == (str(tmp_path / "cat.wav"), str(tmp_path / "cat.png"))
    meta = load_bridge(trained).meta
    assert sides_for(meta, "audio", "image") == ("clap", "clip")
    assert sides_for(meta, "image", "audio") == ("clip", "clap")
    with pytest.raises(InputError, match="does not connect"):
        sides_for(meta, "pointcloud", "image")
    csv_file.write_text("sound,picture\na,b\n")
    with pytest.raises(InputError, match="header"):
        read_csv_pairs(csv_file)


def test_cli_calibrate_needs_exactly_one_source_of_pairs(trained: Path, tmp_path: Path) -> None:
    for extra in ([], ["--pairs", str(tmp_path / "p.csv"), "--embeddings", str(tmp_path)]):
        r = CliRunner().invoke(app, ["calibrate", "--bridge", str(trained), *extra])
        assert r.exit_code == 1 and r.output.strip().splitlines() == [
            "avsearch: error: give the real pairs as --pairs CSV or as --embeddings FOLDER (one of them)"
        ], r.output
