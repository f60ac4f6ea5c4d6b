"""Fixtures for the bridge tests: small synthetic spaces (generated data, not a model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsearch.bridge.config import TrainConfig, load_train_config, with_overrides
from avsearch.bridge.synthetic import SyntheticData, SyntheticSpec, make_synthetic

SMALL = SyntheticSpec(n_text=3000, n_memory=3000, n_test=400, seed=7)


@pytest.fixture(scope="session")
def synthetic() -> SyntheticData:
    return make_synthetic(SMALL)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory, synthetic: SyntheticData) -> Path:
    return synthetic.save(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture()
def quick_config() -> TrainConfig:
    """The audio-visual preset, shortened so a CPU trains it in seconds."""
    return with_overrides(load_train_config("audio_visual"), epochs=4, batch_size=512)
