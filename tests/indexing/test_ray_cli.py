"""`avsearch index --ray` refusals, each one line and exit code 1, without a cluster: Ray not installed,
an index on an object store, --ray with --embeddings."""

from __future__ import annotations

import sys

from typer.testing import CliRunner

from avsearch.cli.app import app
from tests.search.media_factory import write_image


def _index(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, ["index", *args, "-q"])
    return done.exit_code, done.stderr


def test_without_ray_installed_one_line_says_what_to_install(tmp_path, monkeypatch) -> None:
    write_image(tmp_path / "m" / "a.png", 0)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code, err = _index(str(tmp_path / "m"), "--index-dir", str(tmp_path / "i"), "--ray", "auto")
    assert (code, err.strip()) == (1, "avsearch: error: --ray needs Ray and lance-ray: pip install avsearch[ray]")
    assert not (tmp_path / "i").exists()  # refused before an index folder is made


def test_an_index_on_an_object_store_is_refused_with_ray(tmp_path) -> None:
    write_image(tmp_path / "m" / "a.png", 0)
    code, err = _index(str(tmp_path / "m"), "--index-dir", "s3://bucket/index", "--ray", "auto")
    assert code == 1 and err.count("\n") == 1
    assert "s3://bucket/index: --ray writes to an index folder on a local or shared filesystem" in err


def test_ray_with_embeddings_is_refused(tmp_path) -> None:
    code, err = _index("--embeddings", str(tmp_path), "--index-dir", str(tmp_path / "i"), "--ray", "auto")
    assert code == 1 and "--ray embeds the files of a media FOLDER" in err and err.count("\n") == 1
