"""The walk's symlink policy (configs/search.toml [ingest] follow_symlinks): by default a link is followed
only when its target lies inside the walked folder; the rest are listed with their reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsearch.errors import ConfigError
from avsearch.media.walk import walk_folder
from avsearch.store.config import IngestConfig


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "a.wav").write_bytes(b"a")
    (root / "sub" / "b.wav").write_bytes(b"b")
    (outside / "secret.wav").write_bytes(b"s")
    (root / "inside-link.wav").symlink_to(root / "sub" / "b.wav")
    (root / "inside-dir").symlink_to(root / "sub")
    (root / "outside-link.wav").symlink_to(outside / "secret.wav")
    (root / "outside-dir").symlink_to(outside)
    (root / "sub" / "deep-outside.wav").symlink_to("../../outside/secret.wav")
    return root


def _names(root: Path, policy: str | bool) -> tuple[set[str], dict[str, str]]:
    files, problems = walk_folder(root, policy)
    return {str(Path(f.path).relative_to(root)) for f in files}, {
        str(Path(p).relative_to(root)): why for p, why in problems
    }


def test_inside_follows_links_within_the_folder_only(tree: Path) -> None:
    files, problems = _names(tree, "inside")
    assert files == {"a.wav", "sub/b.wav", "inside-link.wav"}  # inside-dir is sub again: walked once
    assert set(problems) == {"outside-link.wav", "outside-dir", "sub/deep-outside.wav"}
    assert all("outside the indexed folder" in why for why in problems.values())


def test_anywhere_and_never(tree: Path) -> None:
    files, problems = _names(tree, "anywhere")
    assert {"outside-link.wav", "outside-dir/secret.wav", "sub/deep-outside.wav"} <= files and not problems
    files, problems = _names(tree, "never")
    assert files == {"a.wav", "sub/b.wav"}
    assert len(problems) == 5 and all("not followed" in why for why in problems.values())
    assert _names(tree, True)[0] == _names(tree, "anywhere")[0]  # the older boolean settings
    assert _names(tree, False)[0] == _names(tree, "never")[0]


def test_the_default_setting_is_inside_and_others_are_refused() -> None:
    assert IngestConfig().follow_symlinks == "inside"
    with pytest.raises(ConfigError, match="follow_symlinks"):
        IngestConfig(follow_symlinks="sometimes")
