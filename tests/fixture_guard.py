"""Test-only: module- and session-scoped fixtures that hand out folders must come back unchanged.

Such a folder is shared by every test of the module (or session); a test that writes into it changes what
the tests after it see, so their outcome depends on the order they run in. `unchanged(root)` wraps a
fixture's yield: the folder's files (name, size, mtime) after the last test must be those before the first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and link under root (links not followed) -> (size, mtime_ns)."""
    out = {}
    for path in root.rglob("*"):
        st = path.lstat()
        if not path.is_dir() or path.is_symlink():
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


@contextlib.contextmanager
def unchanged(root: Path, what: str) -> Iterator[None]:
    """Fail (at the fixture's teardown) when the files under root differ from what they were on entry."""
    before = tree_state(root)
    yield
    after = tree_state(root)
    if after != before:
        added = sorted(set(after) - set(before))
        gone = sorted(set(before) - set(after))
        changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
        pytest.fail(f"a test changed {what} (a shared fixture): added {added}, removed {gone}, rewritten {changed}")
