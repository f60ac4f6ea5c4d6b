"""The Python API users import (avsearch/__init__.py): every exported name resolves, importing the
package stays cheap, and the README's example runs (with the test-only FAKE encoder of
tests/search/fake_encoder.py standing in for the model weights)."""

from __future__ import annotations

import subprocess
import sys

import avsearch
from tests.search.conftest import make_bridge
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_audio, write_image


def test_every_exported_name_resolves() -> None:
    for name in avsearch.__all__:
        assert getattr(avsearch, name) is not None, name
    assert {"Index", "index_folder", "query", "train_bridge", "open_bridge", "classify3d"} <= set(dir(avsearch))


def test_import_avsearch_loads_no_model_library() -> None:
    code = (
        "import sys, avsearch; print(sorted(m for m in ('torch', 'lancedb', 'open_clip', 'faiss') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_index_a_folder_and_search_it(tmp_path) -> None:
    bridge_file = make_bridge(tmp_path / "av.safetensors")
    media = tmp_path / "media"
    images = [write_image(media / f"pic_{i}.png", seed=i) for i in range(6)]
    sounds = [write_audio(media / f"snd_{i}.wav", seed=i) for i in range(4)]
    loader = FakeLoader()
    summary = avsearch.index_folder(media, tmp_path / "index", bridges=[bridge_file], encoder_loader=loader)
    assert summary.counts == {"image": 6, "audio": 4} and not summary.failed

    index = avsearch.Index.open(tmp_path / "index", encoder_loader=loader)
    assert index.describe().modalities[0].files in (6, 4)
    (a2i,) = avsearch.query(index, audio=sounds[0], target="image", k=3)
    assert a2i.space == "shared:audio_visual" and a2i.bridge["name"] == "audio_visual"
    assert len(a2i.hits) == 3 and {h.path for h in a2i.hits} <= {str(p) for p in images}
    (same,) = avsearch.query(index, item=str(images[2]), target="image", k=2)
    assert str(images[2]) not in [h.path for h in same.hits] and len(same.hits) == 2
