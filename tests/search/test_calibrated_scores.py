"""Calibrated scores in search results: a probability beside each score of a calibrated list,
`--min-score auto` dropping hits under the calibration's 0.5 level, "uncalibrated" said once per list,
the same in the HTTP API. Index from the test-only FAKE encoder (tests/search/fake_encoder.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import avsearch.search.query as query_module
from avsearch.bridge.calibrate import with_calibration
from avsearch.bridge.confidence import fit_calibration
from avsearch.bridge.io import load_bridge, save_calibrations
from avsearch.cli.app import app
from avsearch.errors import InputError
from avsearch.indexing.pipeline import index_folder
from avsearch.search.results import AUTO, Hit, ResultSet, apply_min_score, parse_min_score
from avsearch.serve.app import create_app
from avsearch.store.index import Index
from tests.search.conftest import make_bridge
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_audio, write_image

runner = CliRunner()


def _set(scores: list[float], calibration: dict | None) -> ResultSet:
    hits = [Hit(i + 1, f"/f{i}", "image", s) for i, s in enumerate(scores)]
    return ResultSet("q", "audio", "image", "shared:audio_visual", "exact", hits, calibration=calibration)


def test_min_score_rules() -> None:
    calibrated = _set([0.9, 0.5, 0.1], {"source": "x", "score_at_50": 0.4, "score_at_90": 0.8})
    plain = _set([0.9, 0.5, 0.1], None)
    assert apply_min_score([calibrated, plain], AUTO) is True  # the uncalibrated list is reported
    assert [h.score for h in calibrated.hits] == [0.9, 0.5] and calibrated.weaker == 1
    assert len(plain.hits) == 3 and plain.weaker == 0
    fixed = _set([0.9, 0.5, 0.1], None)
    assert apply_min_score([fixed], 0.6) is False and [h.score for h in fixed.hits] == [0.9]
    assert parse_min_score("auto") == AUTO and parse_min_score("0.25") == 0.25 and parse_min_score(None) is None
    for bad in ("nan", "inf", "x", " 0.2"):
        with pytest.raises(InputError, match="min score"):
            parse_min_score(bad)


@pytest.fixture(scope="module")
def calibrated_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("calibrated-index")
    bridge = make_bridge(base / "av.safetensors", seed=5)
    media = base / "media"
    for i in range(6):
        write_image(media / f"pic{i}.png", i, 48)
        write_audio(media / f"tone{i}.wav", i)
    index_folder(media, base / "index", [bridge], encoder_loader=FakeLoader())
    return base / "index", bridge, media


def _calibrate(bridge: Path, index: Path, media: Path) -> float:
    """Store a calibration for audio|image whose 0.5 level falls between this query's hit scores."""
    opened = Index.open(index, encoder_loader=FakeLoader())
    [result] = query_module.query(opened, audio=media / "tone0.wav", target="image", k=6)
    scores = np.array([h.score for h in result.hits])
    middle = float(np.median(scores))
    spread = max(float(scores.std()), 1e-3)
    rng = np.random.default_rng(0)
    calibration = fit_calibration(
        rng.normal(middle + spread, spread / 4, 500), rng.normal(middle - spread, spread / 4, 500), "500 real pairs"
    )
    model = load_bridge(bridge)
    save_calibrations(bridge, with_calibration(model, ("audio", "image"), calibration))
    return calibration.score_at_50


def test_cli_probabilities_and_min_score_auto(
    calibrated_index: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    index, bridge, media = calibrated_index
    monkeypatch.setattr("avsearch.store.index.default_loader", lambda *a: FakeLoader())
    args = ["query", "--audio", str(media / "tone0.wav"), "--index-dir", str(index), "--target", "image", "-k", "6"]
    before = runner.invoke(app, [*args, "--json"])
    assert before.exit_code == 0, before.output
    [plain] = json.loads(before.stdout)
    assert plain["calibration"] is None and all(h["probability"] is None for h in plain["hits"])
    table = runner.invoke(app, args)
    assert "uncalibrated" in table.stdout and table.stdout.count("uncalibrated") == 1
    level = _calibrate(bridge, index, media)
    after = runner.invoke(app, [*args, "--json"])
    [calibrated] = json.loads(after.stdout)
    assert calibrated["calibration"]["source"] == "500 real pairs"
    probabilities = [h["probability"] for h in calibrated["hits"]]
    assert probabilities == sorted(probabilities, reverse=True) and probabilities[0] > 0.5 > probabilities[-1]
    cut = runner.invoke(app, [*args, "--json", "--min-score", "auto"])
    [kept] = json.loads(cut.stdout)
    assert kept["hits"] and all(h["score"] >= level for h in kept["hits"])
    assert kept["weaker"] == len(calibrated["hits"]) - len(kept["hits"]) > 0


def test_api_probabilities_and_min_score(calibrated_index: tuple[Path, Path, Path]) -> None:
    index, bridge, media = calibrated_index
    level = _calibrate(bridge, index, media)
    with TestClient(create_app(index, encoder_loader=FakeLoader(), reload_interval=0)) as c:
        audio = (media / "tone0.wav").read_bytes()
        full = c.post("/api/search", files={"file": ("q.wav", audio)}, data={"target": "image", "k": "6"}).json()
        [r] = full["results"]
        assert r["calibration"]["score_at_50"] == pytest.approx(level)
        assert all(isinstance(h["probability"], float) for h in r["hits"])
        cut = c.post(
            "/api/search", files={"file": ("q.wav", audio)}, data={"target": "image", "k": "6", "min_score": "auto"}
        ).json()
        assert cut["query"]["min_score"] == "auto"
        assert all(h["score"] >= level for h in cut["results"][0]["hits"]) and cut["results"][0]["weaker"] > 0
        text = c.get("/api/search", params={"text": "a dog", "target": "image", "min_score": "auto"}).json()
        assert text["results"][0]["calibration"] is None  # text -> image is CLIP's own space: no bridge
        assert c.get("/api/search", params={"text": "a", "min_score": "nan"}).status_code == 400
