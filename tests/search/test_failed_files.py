"""Files that fail are remembered: an unchanged one is listed again without being decoded, a fixed one is
indexed, `--retry-failed` decodes them all again, `info` lists them; exit code 3 and the --json report
(test-only FAKE encoder)."""

from __future__ import annotations

import json
import os

from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.indexing import pipeline
from avsearch.indexing.pipeline import index_folder
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_image


def test_failures_are_remembered_until_the_file_changes(tmp_path, bridge_file, monkeypatch) -> None:
    root = tmp_path / "media"
    good = [write_image(root / f"ok_{i}.png", seed=i) for i in range(3)]
    bad = root / "broken.png"
    bad.write_bytes(good[0].read_bytes()[:60])  # a PNG signature, then nothing decodable
    loader = FakeLoader()
    first = index_folder(root, tmp_path / "index", [bridge_file], encoder_loader=loader)
    assert [p for p, _ in first.failed] == [str(bad)] and first.failed_before == 0
    reason = first.failed[0][1]

    hashed: list[str] = []
    real_hash = pipeline.content_hash
    monkeypatch.setattr(pipeline, "content_hash", lambda p: hashed.append(p) or real_hash(p))
    second = index_folder(root, tmp_path / "index", encoder_loader=loader)
    assert second.failed == [(str(bad), reason)] and second.failed_before == 1
    assert hashed == []  # not read at all: its size and mtime are those it failed with

    retried = index_folder(root, tmp_path / "index", encoder_loader=loader, retry_failed=True)
    assert retried.failed == [(str(bad), reason)] and retried.failed_before == 0 and hashed == [str(bad)]

    write_image(bad, seed=9)  # fixed: a new size and mtime
    os.utime(bad, ns=(10**18, 10**18))
    fixed = index_folder(root, tmp_path / "index", encoder_loader=loader)
    assert fixed.failed == [] and fixed.added == 1 and fixed.counts["image"] == 4


def test_exit_code_json_report_and_info(tmp_path, bridge_file, monkeypatch) -> None:
    root = tmp_path / "media"
    write_image(root / "ok.png", seed=0)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "notes.txt").write_text("not media at all\n")
    monkeypatch.setattr("avsearch.store.index.default_loader", lambda *a: FakeLoader())
    index = tmp_path / "index"
    args = ["index", str(root), "--index-dir", str(index), "--bridge", str(bridge_file), "-q"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    assert [f["path"] for f in report["failed"]] == [str(root / "broken.png")] and report["ignored"] == 1
    assert report["counts"] == {"image": 1, "audio": 0}
    info = CliRunner().invoke(app, ["info", "--index-dir", str(index)])
    assert info.exit_code == 0 and f"{root / 'broken.png'}: " in info.stderr and "--retry-failed" in info.stderr

    (root / "broken.png").unlink()
    clean = CliRunner().invoke(app, args)
    assert clean.exit_code == 0, clean.output
    assert "could not be indexed" not in CliRunner().invoke(app, ["info", "--index-dir", str(index)]).stderr
