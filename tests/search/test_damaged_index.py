"""Bad index folders get one line, never a traceback: --index-dir naming a file or a place that cannot be
made, and an index whose table data was deleted (query, info and index say which table is damaged;
`index --rebuild` repairs it). Test-only FAKE encoder."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from avsearch.cli.app import app
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_image

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fake_models(monkeypatch) -> None:
    monkeypatch.setattr("avsearch.store.index.default_loader", lambda *a: FakeLoader())


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avsearch: error: "), result.stderr
    return lines[0]


def test_index_dir_that_is_a_file_or_cannot_be_made(tmp_path, bridge_file) -> None:
    (tmp_path / "media").mkdir()
    write_image(tmp_path / "media" / "a.png", seed=0)
    plain = tmp_path / "plain"
    plain.write_text("x")
    for where, why in ((plain, "not a folder"), (plain / "sub", "cannot create the index folder")):
        args = ["index", str(tmp_path / "media"), "--index-dir", str(where), "--bridge", str(bridge_file)]
        assert why in _one_line_error(runner.invoke(app, args))


def test_deleted_table_data_is_named_and_rebuild_repairs_it(tmp_path, bridge_file) -> None:
    media = tmp_path / "media"
    pictures = [write_image(media / f"p{i}.png", seed=i) for i in range(4)]
    index = tmp_path / "index"
    base = ["index", str(media), "--index-dir", str(index), "-q"]
    assert runner.invoke(app, [*base, "--bridge", str(bridge_file)]).exit_code == 0
    for data in (index / "tables" / "image.lance" / "data").iterdir():
        data.unlink()

    query = ["query", "--id", str(pictures[0]), "--target", "image", "--index-dir", str(index)]
    for args in (query, ["info", "--index-dir", str(index)], base):
        line = _one_line_error(runner.invoke(app, args))
        assert "table 'image' is damaged" in line and "--rebuild" in line

    rebuilt = runner.invoke(app, [*base, "--rebuild"])
    assert rebuilt.exit_code == 0, rebuilt.output
    hits = runner.invoke(app, [*query, "--paths-only"])
    assert hits.exit_code == 0 and set(hits.stdout.split()) == {str(p) for p in pictures[1:]}
