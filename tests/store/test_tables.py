"""LanceDB tables and the manifest: upserts, deletes, fetches, awkward paths, compatibility refusals."""

from __future__ import annotations

import numpy as np
import pytest

from avsearch.errors import IncompatibleError
from avsearch.store.manifest import SCHEMA_VERSION, BridgeRef, Manifest, ModalityEntry, load_manifest, save_manifest
from avsearch.store.table_schema import NATIVE, FileRecord
from avsearch.store.tables import MediaStore

SHARED = "proj_av"


def _rows(paths: list[str], dim: int, seed: int) -> tuple[list[FileRecord], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    recs = [FileRecord(p, 10 + i, 1000 + i, f"h{seed}-{i}", "enc", "br") for i, p in enumerate(paths)]
    native = rng.standard_normal((len(paths), dim)).astype(np.float32)
    return recs, {NATIVE: native, SHARED: rng.random((len(paths), 3)).astype(np.float32)}


def test_upsert_fetch_delete_with_awkward_paths(tmp_path) -> None:
    store = MediaStore(tmp_path)
    store.ensure_table("audio", 4, {SHARED: 3})
    paths = ["/m/a.wav", "/m/it's here.wav", '/m/quote"d.wav', "/m/new\nline.wav", "/m/ünï 💥.wav"]
    recs, vectors = _rows(paths, 4, 0)
    store.upsert("audio", recs, vectors)
    assert store.count("audio") == 5
    book = store.bookkeeping("audio")
    assert set(book) == set(paths) and book["/m/it's here.wav"].hash == "h0-1"

    got, got_vectors = store.fetch("audio", ["/m/it's here.wav", "/m/ünï 💥.wav", "/m/missing"])
    order = [paths.index(r.path) for r in got]
    assert len(got) == 2 and set(got_vectors) == {NATIVE, SHARED}
    for column in (NATIVE, SHARED):
        np.testing.assert_allclose(got_vectors[column], vectors[column][order])

    recs2, vectors2 = _rows(paths[:2], 4, 1)  # same paths, new content: replaced, not duplicated
    store.upsert("audio", recs2, vectors2)
    assert store.count("audio") == 5 and store.bookkeeping("audio")["/m/a.wav"].hash == "h1-0"

    store.delete("audio", ["/m/it's here.wav", '/m/quote"d.wav'])
    assert set(store.bookkeeping("audio")) == {"/m/a.wav", "/m/new\nline.wav", "/m/ünï 💥.wav"}
    all_paths, matrix, version = store.vectors("audio", SHARED)
    assert matrix.shape == (3, 3) and len(all_paths) == 3 and version == store.version("audio")
    store.compact("audio")
    assert store.count("audio") == 3 and store.vectors("audio", NATIVE)[1].shape == (3, 4)


def test_rows_are_found_through_the_key_index_before_and_after_it_catches_up(tmp_path) -> None:
    """compact() builds a B-tree on `key` (lookups stop scanning the table); rows written after it are
    still found, replaced and deleted exactly, and the next compact() folds them in."""
    store = MediaStore(tmp_path)
    store.ensure_table("image", 4, {SHARED: 3})
    paths = [f"/m/{i}.png" for i in range(50)]
    recs, vectors = _rows(paths, 4, 0)
    store.upsert("image", recs, vectors)
    assert store.key_index_rows("image") is None
    store.compact("image")
    assert store.key_index_rows("image") == (50, 0)

    new = ["/m/new-a.png", "/m/new-b.png", paths[7]]  # two new rows, one replaced
    recs2, vectors2 = _rows(new, 4, 1)
    store.upsert("image", recs2, vectors2)
    store.delete("image", [paths[3]])
    got, got_vectors = store.fetch("image", [*new, paths[3], paths[8]])
    assert {r.path for r in got} == {*new, paths[8]}
    by_path = {r.path: i for i, r in enumerate(got)}
    for j, p in enumerate(new):
        np.testing.assert_allclose(got_vectors[NATIVE][by_path[p]], vectors2[NATIVE][j])
    assert store.lookup("image", [paths[7]])[paths[7]].hash == "h1-2" and store.count("image") == 51
    store.compact("image")
    indexed, pending = store.key_index_rows("image")
    assert pending == 0 and indexed >= 51
    assert set(store.lookup("image", [*paths, *new])) == set(paths + new) - {paths[3]}


def test_table_with_other_widths_is_refused(tmp_path) -> None:
    store = MediaStore(tmp_path)
    store.ensure_table("image", 4, {SHARED: 3})
    store.ensure_table("image", 4, {SHARED: 3})  # same widths: fine
    with pytest.raises(IncompatibleError):
        MediaStore(tmp_path).ensure_table("image", 8, {SHARED: 3})
    with pytest.raises(IncompatibleError):
        MediaStore(tmp_path).ensure_table("image", 4, {SHARED: 3, "proj_3d": 3})


def test_manifest_roundtrip_and_refusals(tmp_path) -> None:
    assert load_manifest(tmp_path) is None
    m = Manifest(
        bridges={"av": BridgeRef("av", "f" * 16, "/b.safetensors", ["clip", "clap"], 512)},
        modalities={
            "audio": ModalityEntry("clap-630k-fusion", "clap", 512, text=True, encoder_fingerprint="e1"),
            "image": ModalityEntry("clip-vit-b-32-openai", "clip", 512, text=True),
        },
    )
    save_manifest(tmp_path, m)
    back = load_manifest(tmp_path)
    assert back is not None and back.modalities["audio"].encoder_fingerprint == "e1"
    assert back.shared_dims("image") == {"proj_av": 512} and back.bridge_stamp("audio") == "av:" + "f" * 16
    back.check_bridges({"av": "f" * 16}, str(tmp_path))
    with pytest.raises(IncompatibleError, match="bridge"):
        back.check_bridges({"av": "0" * 16}, str(tmp_path))
    with pytest.raises(IncompatibleError, match="bridge"):
        back.check_bridges({"av": "f" * 16, "3d": "1" * 16}, str(tmp_path))
    with pytest.raises(IncompatibleError, match="weights"):
        back.check_encoder("clap-630k-fusion", "other", str(tmp_path))
    assert back.record_encoder("clip-vit-b-32-openai", "c1") and not back.record_encoder("clip-vit-b-32-openai", "c1")
    (tmp_path / "manifest.json").write_text(
        (tmp_path / "manifest.json").read_text().replace(f'"schema_version": {SCHEMA_VERSION}', '"schema_version": 99')
    )
    with pytest.raises(IncompatibleError, match="schema version"):
        load_manifest(tmp_path)
