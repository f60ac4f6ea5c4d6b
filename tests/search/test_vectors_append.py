"""`avsearch index --embeddings` appends rows it has not indexed in large commits (no key join per batch,
which costs O(table) each) and replaces rows it has, by key: a run stopped mid-commit leaves whole commits
only, and running it again adds no row twice."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import avsearch.indexing.vectors as vectors_mod
from avsearch.indexing.vectors import index_embeddings
from avsearch.store.index import Index
from avsearch.store.table_rows import key_prefixes
from avsearch.store.table_schema import NATIVE
from avsearch.store.tables import MediaStore

N = 50


class Killed(Exception):
    """Stands for a kill in the middle of a commit."""


@pytest.fixture()
def small_commits(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Batches of 4 rows, commits of 16 (50 rows: 4 commits), and a count of each kind of write."""
    monkeypatch.setattr(vectors_mod, "_CHUNK", 4)
    monkeypatch.setattr(vectors_mod, "_COMMIT_ROWS", 16)
    calls = {"upsert": 0, "append": 0}
    for name in calls:
        original = getattr(MediaStore, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(MediaStore, name, counted)
    return calls


def _stored(index_dir: Path) -> dict[str, np.ndarray]:
    store = MediaStore(index_dir)
    names, matrix, _ = store.vectors("image", NATIVE)
    assert len(set(names)) == len(names)
    return dict(zip(names, matrix, strict=True))


def test_key_prefixes_are_the_keys_first_64_bits() -> None:
    keys = [hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest() for i in range(300)]
    got = key_prefixes(pa.chunked_array([pa.array(keys[:100]), pa.array(keys[100:])]))
    assert got.tolist() == [int(k[:16], 16) for k in keys]


def test_new_rows_are_appended_and_a_stopped_run_resumes_without_duplicates(
    small_commits: dict[str, int], bridge_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "vectors"
    folder.mkdir()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, 512)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save(folder / "image.clip.npy", x)
    name = [f"{folder / 'image.clip.npy'}#{i}" for i in range(N)]

    # stopped in the second commit's third batch: the first commit (16 rows) is kept, nothing of the second
    with Index.update(tmp_path / "index", bridges=[bridge_file]) as index:
        real, seen = index.models.all_vectors, [0]

        def dies(table: str, native: np.ndarray) -> dict[str, np.ndarray]:
            seen[0] += 1
            if seen[0] == 7:
                raise Killed
            return real(table, native)

        monkeypatch.setattr(index.models, "all_vectors", dies)
        with pytest.raises(Killed):  # our error, not one Lance wrapped (nor a "damaged table")
            index_embeddings(folder, index)
    assert small_commits == {"upsert": 0, "append": 2}
    stored = _stored(tmp_path / "index")
    assert sorted(stored) == sorted(name[:16])

    # run again: the kept commit's rows are replaced by key (4 upserts), the rest appended (3 commits)
    x[3] = -x[3]
    np.save(folder / "image.clip.npy", x)
    with Index.update(tmp_path / "index") as index:
        index_embeddings(folder, index)
    assert small_commits == {"upsert": 4, "append": 5}
    stored = _stored(tmp_path / "index")
    assert sorted(stored) == sorted(name)
    np.testing.assert_allclose(np.stack([stored[n] for n in name]), x, atol=1e-6)

    # and again: every row is held, so every row is an upsert; still one row per id
    with Index.update(tmp_path / "index") as index:
        index_embeddings(folder, index)
    assert small_commits == {"upsert": 4 + 13, "append": 5}
    assert sorted(_stored(tmp_path / "index")) == sorted(name)
