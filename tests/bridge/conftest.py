"""Fixtures for the bridge tests: small synthetic spaces (generated data, not a model)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from avsearch.bridge.config import TrainConfig, load_train_config, with_overrides
from avsearch.bridge.synthetic import SyntheticData, SyntheticSpec, make_synthetic
from avsearch.evaluation import ablations

DIM = 128  # narrower than CLIP's 512 so a CPU trains a bridge in seconds; the method is the same
SMALL = SyntheticSpec(n_text=3000, n_memory=3000, n_test=400, dim=DIM, seed=7)


narrow = partial(ablations.narrow, dim=DIM)


@pytest.fixture(scope="session")
def synthetic() -> SyntheticData:
    return make_synthetic(SMALL)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory, synthetic: SyntheticData) -> Path:
    return synthetic.save(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture()
def quick_config() -> TrainConfig:
    """The audio-visual preset on the narrow synthetic spaces, shortened so a CPU trains it in seconds."""
    return narrow(with_overrides(load_train_config("audio_visual"), epochs=4, batch_size=512))


@pytest.fixture(scope="session")
def preset_synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic arrays as wide as the bundled presets expect (512), for the command-line tests."""
    spec = SyntheticSpec(n_text=2000, n_memory=2000, n_test=400, seed=7)
    return make_synthetic(spec).save(tmp_path_factory.mktemp("synthetic512"))
