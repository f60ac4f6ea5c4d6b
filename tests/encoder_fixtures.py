"""Pytest plugin: session-cached weights folders for the CLIP and CLAP encoders (test-only).

Register it in tests/conftest.py with `pytest_plugins = ["tests.encoder_fixtures"]`.
Fixtures (all session-scoped; the folders are built once per session, even when this plugin is
also imported by a sub-directory conftest):
- clip_weights_dir: folder with ViT-B-32.pt (random weights, real architecture);
- clap_weights_dir: folder with 630k-fusion-best.pt + roberta-base/ (random, tiny RoBERTa);
- av_weights_dir: one folder with both;
- cavmae_weights_dir: audio_model.21.pth (CAV-MAE-Scale++ release layout, random values, 764 MB, ~10 s).
The first three are the same folder, filled lazily with what the fixtures used so far need; tests copy it
or read it, never add to it (a test that needs a folder without the released bridges relies on that).
The CAV-MAE folder is its own: tests add files to it, and copying 764 MB along with the others is slow.
See tests/weights_factory.py for what the files hold.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.weights_factory import make_av_weights, make_cavmae_weights, make_clap_weights, make_clip_weights

_shared: dict[str, Path] = {}


def _folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per session; each fixture adds only the files it needs (the factories are idempotent)."""
    if "dir" not in _shared:
        _shared["dir"] = tmp_path_factory.mktemp("weights")
    return _shared["dir"]


@pytest.fixture(scope="session")
def clip_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip_weights(_folder(tmp_path_factory))


@pytest.fixture(scope="session")
def clap_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clap_weights(_folder(tmp_path_factory))


@pytest.fixture(scope="session")
def av_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_av_weights(_folder(tmp_path_factory))


@pytest.fixture(scope="session")
def cavmae_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cavmae_weights(tmp_path_factory.mktemp("cavmae-weights"))
