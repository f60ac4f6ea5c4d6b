"""File names that break naive code: non-UTF-8 bytes, SQL quotes and injections, backslashes, control
characters, NFC vs NFD twins, emoji, leading dashes and glob characters. Each is indexed once, found
again unchanged, removed alone, and printed without a traceback (test-only FAKE encoder)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.indexing.pipeline import index_folder
from avsearch.search.engine import SearchEngine
from avsearch.store.index import Index
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_audio, write_image

NAMES = [
    "it's.png",
    "' OR '1'='1.png",
    "'); DROP TABLE image; --.png",
    'double "quoted".png',
    "back\\slash.png",
    "new\nline.png",
    "tab\there.png",
    "caf\u00e9.png",  # NFC
    "cafe\u0301.png",  # NFD: another file with the same look
    "emoji \U0001f436.png",
    "-rf.png",
    "[glob]*?.png",
    "percent %s %d.png",
    "semi;colon.png",
]
RAW = [b"\xff\xfe raw bytes.png", b"latin1 caf\xe9.wav"]  # not UTF-8: legal on Linux


def _make(root: Path) -> list[str]:
    paths = [str(write_image(root / name, seed=i)) for i, name in enumerate(NAMES)]
    for i, raw in enumerate(RAW):
        path = os.fsdecode(os.fsencode(str(root)) + b"/" + raw)
        (write_audio if raw.endswith(b".wav") else write_image)(Path(path), seed=100 + i)
        paths.append(path)
    return paths


def test_hostile_names_index_and_search(tmp_path, bridge_file) -> None:
    root = tmp_path / "media"
    root.mkdir()
    paths = _make(root)
    loader = FakeLoader()
    first = index_folder(root, tmp_path / "index", [bridge_file], encoder_loader=loader)
    assert first.failed == [] and first.added == len(paths) == len(NAMES) + 2
    assert first.counts == {"image": len(NAMES) + 1, "audio": 1}

    again = index_folder(root, tmp_path / "index", encoder_loader=loader)
    assert again.unchanged == len(paths) and again.added == again.removed == 0

    index = Index.open(tmp_path / "index", encoder_loader=loader)
    stored = set(index.tables.bookkeeping("image")) | set(index.tables.bookkeeping("audio"))
    assert stored == set(paths)  # every name round-trips exactly, NFC and NFD twins kept apart

    os.unlink(paths[1])  # "' OR '1'='1.png": deletes that row and nothing else
    third = index_folder(root, tmp_path / "index", encoder_loader=loader)
    assert third.removed == 1 and third.counts == {"image": len(NAMES), "audio": 1}

    hits = SearchEngine(Index.open(tmp_path / "index", encoder_loader=loader)).search_item(paths[-2], "image", k=50)
    assert {h.path for h in hits[0].hits} == set(paths[:-1]) - {paths[1], paths[-2]}


def test_hostile_names_print_through_the_cli(tmp_path, bridge_file) -> None:
    root = tmp_path / "media"
    root.mkdir()
    paths = _make(root)
    index_folder(root, tmp_path / "index", [bridge_file], encoder_loader=FakeLoader())
    args = ["query", "--id", paths[-2], "--target", "image", "-k", "50", "--index-dir", str(tmp_path / "index")]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    shown = [h["path"] for h in json.loads(result.stdout)[0]["hits"]]
    assert str(root / "\\xff\\xfe raw bytes.png") not in shown  # the query item itself is left out
    assert str(root / "new\nline.png") in shown and str(root / "' OR '1'='1.png") in shown
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "image -> image" in table.stdout
    listed = CliRunner().invoke(app, ["query", "--id", paths[0], *args[3:], "--paths-only"])
    assert listed.exit_code == 0 and str(root / "\\xff\\xfe raw bytes.png") in listed.stdout.splitlines()


def test_result_ids_name_items_back(tmp_path, bridge_file) -> None:
    """A hit's id (its row key: hex only) finds the same item again, whatever bytes its name holds, so the
    HTTP API and `query --id` never need a path from the client."""
    root = tmp_path / "media"
    root.mkdir()
    paths = _make(root)
    loader = FakeLoader()
    index_folder(root, tmp_path / "index", [bridge_file], encoder_loader=loader)
    engine = SearchEngine(Index.open(tmp_path / "index", encoder_loader=loader))
    hits = engine.search_item(paths[0], "image", k=50)[0].hits
    assert len(hits) == len(NAMES) and len({h.id for h in hits}) == len(hits)
    for hit in hits:
        assert len(hit.id) == 32 and set(hit.id) <= set("0123456789abcdef")
        by_id = engine.search_item(hit.id, "image", k=50)[0].hits
        by_path = engine.search_item(hit.path, "image", k=50)[0].hits
        assert [h.id for h in by_id] == [h.id for h in by_path] and hit.id not in {h.id for h in by_id}
    raw = next(h for h in hits if h.path == paths[-2])  # a non-UTF-8 name
    result = CliRunner().invoke(app, ["query", "--id", raw.id, "-k", "3", "--index-dir", str(tmp_path / "index")])
    assert result.exit_code == 0, result.output
    unknown = CliRunner().invoke(app, ["query", "--id", "0" * 32, "--index-dir", str(tmp_path / "index")])
    assert "no such item" in unknown.output
