"""Detection by content, one verdict everywhere (media/detect.py).

Every supported format is found in a folder and as a single file and decoded by its reader; every kind
of bad media file is *failed* with a one-line reason naming it (by detection, or by its reader when the
fault lies deeper); plainly-not-media files are not media; a PLY named .png is a point cloud for
detect_kind, the point-cloud reader, the picture reader's refusal and the query path alike.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from avsearch.errors import DecodeError, InputError
from avsearch.indexing.plan import make_plan
from avsearch.media.audio import load_audio
from avsearch.media.detect import Detected, detect, detect_kind
from avsearch.media.failures import NOT_MEDIA
from avsearch.media.image import load_image
from avsearch.media.pointcloud import load_pointcloud
from avsearch.media.walk import collect_files
from avsearch.modalities import AUDIO, FILE_MODALITIES, IMAGE, POINTCLOUD
from tests.media.corpus import BAD, GOOD, PLAIN, Case, write_all

READERS = {IMAGE: load_image, AUDIO: load_audio, POINTCLOUD: load_pointcloud}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_all(root / "good", GOOD)
    write_all(root / "bad", BAD)
    write_all(root / "other", PLAIN)
    return root


def _decode(path: Path, kind: str) -> object:
    return READERS[kind](path)


def _check_decoded(value: object, kind: str) -> None:
    if kind == POINTCLOUD:
        assert isinstance(value, np.ndarray) and value.shape == (8192, 3) and np.isfinite(value).all()
    elif kind == AUDIO:
        assert isinstance(value, np.ndarray) and value.ndim == 1 and np.abs(value).max() > 0.1
    else:
        assert value.mode == "RGB" and min(value.size) > 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_supported_format_is_detected_and_decoded(corpus: Path, case: Case) -> None:
    path = corpus / "good" / case.name
    found = detect(path)
    assert found.kind == case.kind and found.reason is None and found.media, found
    if case.fmt:
        assert found.format == case.fmt
    assert detect(path) == found  # the same verdict every time
    _check_decoded(_decode(path, case.kind), case.kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_bad_media_is_failed_with_its_reason(corpus: Path, case: Case) -> None:
    path = corpus / "bad" / case.name
    found = detect(path)
    assert (found.kind, found.format) == (case.kind, case.fmt), found
    assert detect_kind(path) == case.kind  # routed to its decoder, which fails: listed, never ignored
    if case.reason is not None:
        assert found.failed and re.search(case.reason, found.reason or ""), found
        assert "\n" not in (found.reason or "")
    else:
        assert found.media, found  # the fault lies deeper than detection looks
    with pytest.raises(DecodeError) as info:
        _decode(path, case.kind)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert re.search(case.reason or case.decode_reason or "", message), message
    if case.reason is not None:
        assert message == f"{path}: {found.reason}"  # detection and the reader say the same


@pytest.mark.parametrize("case", PLAIN, ids=[c.name for c in PLAIN])
def test_plain_files_are_not_media(corpus: Path, case: Case) -> None:
    path = corpus / "other" / case.name
    assert detect(path) == Detected(None) and detect_kind(path) is None
    for kind in FILE_MODALITIES:
        with pytest.raises(DecodeError, match=re.escape(f"{path}: {NOT_MEDIA}")):
            _decode(path, kind)


def test_a_folder_and_its_files_one_by_one_get_the_same_verdicts(corpus: Path) -> None:
    # The index plans from the walked folder with detect: media that detection already fails are listed
    # with detection's reason, the rest of the media go to their decoder (which gives the others'
    # reasons), plain files are ignored.
    scanned, problems = collect_files([corpus])
    assert problems == []
    plan = make_plan(str(corpus), scanned, {}, detect, _hash, FILE_MODALITIES)
    embedded = {Path(it.file.path).name: it.modality for it in plan.embed}
    failed = {Path(p).name: why for p, why in plan.failed}
    assert failed == {Path(f.path).name: detect(f.path).reason for f in scanned if detect(f.path).failed}
    assert {c.name for c in GOOD} <= set(embedded) and not set(embedded) & set(failed)
    assert {**embedded, **{n: "failed" for n in failed}}.keys() == {c.name for c in (*GOOD, *BAD)}
    assert all(embedded[c.name] == c.kind for c in (*GOOD, *BAD) if c.name in embedded)
    assert sorted(Path(p).name for p in plan.ignored) == sorted(c.name for c in PLAIN)
    for f in scanned:
        (single,), _ = collect_files([f.path])
        assert detect(single.path) == detect(f.path)


def test_a_ply_named_png_is_a_point_cloud_everywhere(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    cloud_png = corpus / "good" / "cloud.png"
    as_ply = tmp_path / "cloud.ply"
    shutil.copy(cloud_png, as_ply)
    assert detect_kind(cloud_png) == POINTCLOUD == detect_kind(as_ply)
    # The point-cloud reader (index, embed, classify3d, query --pointcloud) reads it by content.
    np.testing.assert_array_equal(load_pointcloud(cloud_png), load_pointcloud(as_ply))
    with pytest.raises(DecodeError, match="cloud.png: not a picture: by its content it is a point cloud"):
        load_image(cloud_png)
    # The query path: SearchEngine.search_file detects the file, then its route's encoder decodes it.
    from avsearch.search import engine as engine_module

    routed: list[str] = []
    route = SimpleNamespace(backend="cmcr", target="image", target_modality="image")  # stands in for a Route
    monkeypatch.setattr(engine_module, "plan_routes", lambda modality, *_: routed.append(modality) or [route])
    eng = engine_module.SearchEngine.__new__(engine_module.SearchEngine)
    eng.manifest = None
    monkeypatch.setattr(eng, "_embed", lambda route, path=None, **_: READERS[routed[-1]](path), raising=False)
    ran = lambda route, query, modality, vec, *_: SimpleNamespace(read=(modality, vec.shape))  # noqa: E731
    monkeypatch.setattr(eng, "_run", ran, raising=False)
    assert [r.read for r in eng.search_file(cloud_png)] == [(POINTCLOUD, (8192, 3))]
    letter = corpus / "bad" / "letter.png"
    with pytest.raises(DecodeError, match=re.escape(f"{letter}: not a .png picture: it holds text")):
        eng.search_file(letter)
    with pytest.raises(InputError, match=NOT_MEDIA):
        eng.search_file(corpus / "other" / "notes.txt")


def _hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
