"""avsearch.encoders.upstream: submodules without their package's __init__.py, narrow warning filters;
and the towers an encoder builds when it is asked for only some of them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from avsearch.encoders.registry import clear_cache, load_encoder
from avsearch.encoders.upstream import KnownWarning, quiet, submodule


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A package `upkg` whose __init__.py re-exports a name and imports a costly submodule."""
    pkg = tmp_path / "upkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .light import NAME\nfrom . import heavy\nINIT_RAN = True\n")
    (pkg / "light.py").write_text("from .helper import VALUE\nNAME = 'light:' + VALUE\n")
    (pkg / "helper.py").write_text("VALUE = 'ok'\n")
    (pkg / "heavy.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "upkg"
    for name in [m for m in sys.modules if m == "upkg" or m.startswith("upkg.")]:
        del sys.modules[name]


def test_submodule_skips_the_package_init_until_a_package_name_is_used(package: str) -> None:
    light = submodule(package, "light")
    assert light.NAME == "light:ok"  # its own relative imports ran
    assert "upkg.heavy" not in sys.modules and "INIT_RAN" not in vars(sys.modules[package])
    import upkg

    assert upkg.light is light  # submodules are attributes of the package as usual
    assert "upkg.heavy" not in sys.modules
    assert upkg.NAME == "light:ok"  # first package-level name: __init__.py runs now, once
    assert upkg.INIT_RAN and "upkg.heavy" in sys.modules
    from upkg import heavy

    assert heavy.LOADED
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        upkg.missing  # noqa: B018


def test_submodule_of_a_complete_package_is_a_plain_import(package: str) -> None:
    import upkg

    assert submodule(package, "heavy") is upkg.heavy and upkg.INIT_RAN


def test_submodule_of_a_missing_package() -> None:
    with pytest.raises(ModuleNotFoundError, match="no_such_pkg"):
        submodule("no_such_pkg", "x")


def _warn_both() -> None:
    warnings.warn("old layers path is deprecated", FutureWarning, stacklevel=1)
    warnings.warn("something the user should see", UserWarning, stacklevel=1)


def _shown(*known: KnownWarning) -> list[type[Warning]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet(*known):
            _warn_both()
    return [w.category for w in seen]


def test_quiet_ignores_only_the_known_warnings() -> None:
    assert _shown() == [FutureWarning, UserWarning]
    assert _shown(KnownWarning(r"old layers path", FutureWarning, __name__)) == [UserWarning]
    assert _shown(KnownWarning(r"old layers path", FutureWarning, r"timm\.")) == [FutureWarning, UserWarning]
    assert _shown(KnownWarning(r"old layers path", UserWarning, __name__)) == [FutureWarning, UserWarning]


def test_pointcloud_only_layout_check_skips_the_image_tower() -> None:
    from avsearch.encoders.ulip_checkpoint import check_layout
    from avsearch.errors import IncompatibleError
    from avsearch.modalities import POINTCLOUD
    from tests.pointcloud.conftest import random_ulip_state

    state = random_ulip_state(dense_point_tower=False)
    without_image = {k: v for k, v in state.items() if not k.startswith("visual.") and k != "image_projection"}
    check_layout(without_image, "x.pt", (POINTCLOUD,))  # the image tower is neither checked nor loaded
    with pytest.raises(IncompatibleError, match=r"missing: image_projection, visual\.blocks"):
        check_layout(without_image, "x.pt")
    broken = dict(state, **{"point_encoder.cls_head_finetune.weight": state["pc_projection"]})
    del broken["point_encoder.norm.bias"]
    with pytest.raises(IncompatibleError, match="missing: point_encoder.norm.bias.*unexpected: point_encoder.cls"):
        check_layout(broken, "x.pt", (POINTCLOUD,))


def test_text_only_clap_gives_the_full_models_text_vectors(clap_weights_dir: Path) -> None:
    texts = ["a dog barks", "rain on a metal roof"]
    clear_cache()
    full = load_encoder("clap-630k-fusion", ["audio", "text"], weights_dir=clap_weights_dir, device="cpu")
    text_only = load_encoder("clap-630k-fusion", ["text"], weights_dir=clap_weights_dir, device="cpu")
    assert text_only._model.audio_branch is None and text_only._model.audio_projection is None
    assert np.array_equal(full.encode_text(texts), text_only.encode_text(texts))
    audio_only = load_encoder("clap-630k-fusion", ["audio"], weights_dir=clap_weights_dir, device="cpu")
    assert audio_only._model.text_branch is None and audio_only._model.text_projection is None
    assert audio_only.fingerprint() == full.fingerprint() == text_only.fingerprint()


def test_pointcloud_tower_loads_without_timm_or_torchvision(tmp_path: Path) -> None:
    """The ULIP-2 point tower is torch only: timm and torchvision are for its image tower."""
    from tests.weights_factory import make_ulip_weights

    weights = make_ulip_weights(tmp_path)
    code = textwrap.dedent(
        f"""
        import sys
        from avsearch.encoders.registry import load_encoder
        enc = load_encoder("ulip2-pointbert", ["pointcloud"], weights_dir={str(weights)!r}, device="cpu")
        assert enc.vision_tower is None and enc.point_tower is not None
        print(sorted(m for m in ("timm", "torchvision", "open_clip", "transformers") if m in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("zip_format", [True, False])
def test_clap_checkpoint_reads_both_torch_formats(tmp_path: Path, zip_format: bool) -> None:
    """Zip files (torch.save since 1.6) are memory-mapped; legacy ones are read whole."""
    import torch

    from avsearch.encoders.clap_model import load_checkpoint_state

    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {"module.w": torch.arange(4.0)}}, path, _use_new_zipfile_serialization=zip_format)
    assert torch.equal(load_checkpoint_state(path)["w"], torch.arange(4.0))
