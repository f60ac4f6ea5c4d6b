"""Metadata filters: the filter language (what compiles, what is refused), filtered search equal to a
numpy brute force over the rows that pass (flat and IVF, both strategies), metadata and tags written by
`avsearch index` (FakeLoader: a FAKE encoder, see fake_encoder.py), old indexes, and the CLI."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import avsearch.store.tables as tables
from avsearch.cli.app import app
from avsearch.errors import InputError
from avsearch.indexing.pipeline import index_folder
from avsearch.indexing.vectors import index_embeddings
from avsearch.search.engine import SearchEngine, SearchFilters
from avsearch.search.filters import parse_where, render
from avsearch.search.query import query
from avsearch.store.config import AnnConfig, SearchConfig
from avsearch.store.index import Index
from tests.fixture_guard import unchanged
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_audio, write_cloud, write_image

N = 10_000  # 1% = 100 rows, 0.01% = 1 row


# -- the language -------------------------------------------------------------------------------------------


def _sql(text: str, modality: str = "audio") -> str:
    return render(parse_where(text), modality)


def test_expressions_compile_to_sql_over_known_columns() -> None:
    assert _sql("duration > 5 and folder = 'field'") == "((duration > 5) AND (folder = 'field'))"
    assert _sql("5 < duration") == "(duration > 5)"  # a literal on the left flips the comparison
    # integer columns get integer literals (LanceDB refuses 10.5 or 2000.0 there): width >= 10.5 is width >= 11
    assert _sql("NOT (width >= 10.5 OR height IS NULL)") == "(NOT ((width >= 11) OR (height IS NULL)))"
    assert _sql("ext IN ('.WAV', 'flac')") == "(ext IN ('wav', 'flac'))"
    assert _sql("path NOT LIKE '%it''s%'") == "(path NOT LIKE '%it''s%')"
    assert _sql("points BETWEEN -1 AND 2e3") == "((points BETWEEN -1 AND 2000))"
    assert _sql("width > height") == "(width > height)"
    assert _sql("tag = 'bird'") == "(array_has(tags, 'bird'))"
    assert _sql("'bird' in tags") == "(array_has(tags, 'bird'))"
    assert _sql("tag != 'bird'") == "(NOT array_has(tags, 'bird'))"
    assert _sql("tag IN ('a', 'b')") == "(array_has_any(tags, make_array('a', 'b')))"
    assert _sql("modality = 'image'", "audio") == "('audio' = 'image')"
    assert _sql("Duration >= 1 AnD sample_rate == 48000") == "((duration >= 1) AND (sample_rate = 48000))"
    local_midnight = int(datetime(2026, 1, 1).astimezone().timestamp()) * 10**9
    assert _sql("mtime > '2026-01-01'") == f"(mtime_ns > {local_midnight})"
    assert _sql("mtime < '2026-01-01T00:00:00+00:00'") == f"(mtime_ns < {1767225600 * 10**9})"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("duration > 5; DROP TABLE audio", "unexpected character ';'"),
        ("lower(path) = 'a'", "function calls are not allowed"),
        ("path IN (SELECT path FROM audio)", "unknown column 'select'"),
        ("colour = 'red'", "unknown column 'colour'"),
        ("path = 'open", "an unterminated string"),
        ('path = "a"', "unexpected character '\"'"),
        ("duration > 'long'", "duration compares with numbers"),
        ("folder > 3", "folder compares with quoted text"),
        ("mtime > 5", "mtime compares with a quoted date"),
        ("mtime > 'yesterday'", "'yesterday' is not a date"),
        ("tag > 'a'", "tag takes =, != or IN"),
        ("duration LIKE '5%'", "LIKE needs a text column"),
        ("1 = 1", "a comparison needs a column"),
        ("duration > 5 duration", "unexpected 'duration'"),
        ("(duration > 5", "expected ), found the end"),
        ("duration", "expected a comparison after duration"),
        ("()", "unexpected ')' at position 1"),
        ("duration > 1e999", "out of range"),
        ("NOT " * 60 + "duration > 1", "nested deeper than 50"),
    ],
)
def test_anything_else_is_refused_in_one_line(text: str, problem: str) -> None:
    with pytest.raises(InputError) as err:
        SearchFilters(where=text)
    message = str(err.value)
    assert problem in message and "\n" not in message
    assert "columns: modality, path, folder, ext, size, mtime, duration" in message


def test_flags_compile_into_the_same_language() -> None:
    f = SearchFilters(
        where="size > 0",
        ext=(".WAV",),
        folder="field/a_b/",
        min_duration=1,
        max_duration=2.5,
        tags=("bird", "dawn"),
        since="2026-01-01",
        until="2026-01-31",
    )
    assert f.expression() == (
        "(size > 0) AND ext IN ('.WAV') AND (folder = 'field/a_b' OR folder LIKE 'field/a\\_b/%') AND "
        "duration >= 1.0 AND duration <= 2.5 AND tag = 'bird' AND tag = 'dawn' AND mtime >= '2026-01-01' "
        "AND mtime < '2026-02-01'"
    )
    assert SearchFilters(until="2026-01-31T12:00").expression() == "mtime <= '2026-01-31T12:00'"
    assert not SearchFilters().active and SearchFilters(path_glob="*").active
    with pytest.raises(InputError, match="is not a date"):
        SearchFilters(since="last week")


# -- exactness over a vectors index ----------------------------------------------------------------------------


def _clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 50 centres: an IVF index over them probes few lists."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, 512)).astype(np.float32)
    x = centres[rng.integers(50, size=n)] + 0.6 * rng.standard_normal((n, 512)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _vectors_folder(folder: Path, n: int) -> np.ndarray:
    """image.clip.npy with rows.jsonl metadata: row i has points = i, so `points < m` keeps m rows."""
    folder.mkdir(parents=True)
    x = _clustered(n, 0)
    np.save(folder / "image.clip.npy", x)
    rows = (json.dumps({"source": f"img-{i}", "points": i, "folder": f"f{i % 7}", "tags": ["t"]}) for i in range(n))
    (folder / "image.clip.rows.jsonl").write_text("\n".join(rows) + "\n")
    return x


def _build(tmp: Path, bridge: Path, ivf: bool) -> tuple[Index, np.ndarray]:
    x = _vectors_folder(tmp / "vectors", N)
    cfg = SearchConfig(ann=AnnConfig(exact_max_vectors=1_000 if ivf else 50_000))
    with Index.update(tmp / "index", bridges=[bridge]) as index:
        summary = index_embeddings(tmp / "vectors", index, config=cfg)
    params = summary.indexes["image.native"]["params"]
    assert (params["kind"] != "flat") == ivf and (params["nlist"] > 1) == ivf  # IVF: the product's default kind
    return Index.open(tmp / "index"), x


@pytest.fixture(scope="module")
def flat_index(tmp_path_factory: pytest.TempPathFactory, bridge_file: Path) -> tuple[Index, np.ndarray]:
    return _build(tmp_path_factory.mktemp("flat"), bridge_file, ivf=False)


@pytest.fixture(scope="module")
def ivf_index(tmp_path_factory: pytest.TempPathFactory, bridge_file: Path) -> tuple[Index, np.ndarray]:
    return _build(tmp_path_factory.mktemp("ivf"), bridge_file, ivf=True)


def _brute(x: np.ndarray, item: int, keep: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
    """numpy reference: the k best rows of `keep` (the item itself left out) by inner product."""
    rows = np.array([i for i in np.flatnonzero(keep) if i != item])
    scores = x[rows] @ x[item]
    order = np.argsort(-scores, kind="stable")[:k]
    return [f"img-{i}" for i in rows[order]], scores[order]


def _search(index: Index, item: int, where: str, prefilter_max_rows: int | None, k: int = 10):
    engine = SearchEngine(index)
    if prefilter_max_rows is not None:
        engine.prefilter_max_rows = prefilter_max_rows
    return engine.search_item(f"img-{item}", target="image", k=k, filters=SearchFilters(where=where))[0]


@pytest.mark.parametrize("prefilter_max_rows", [None, 0, 10**9], ids=["default", "selector", "prefilter"])
@pytest.mark.parametrize("keep_rows", [N, N // 100, 1 + N // 10_000], ids=["100%", "1%", "0.01%"])
def test_filtered_search_equals_brute_force(flat_index, keep_rows: int, prefilter_max_rows: int | None) -> None:
    index, x = flat_index
    item = 1 if keep_rows > 2 else 0  # inside the filter, so 0.01% (rows 0 and 1) still leaves one row
    result = _search(index, item, f"points < {keep_rows}", prefilter_max_rows)
    paths, scores = _brute(x, item, np.arange(N) < keep_rows, 10)
    assert [h.path for h in result.hits] == paths
    np.testing.assert_allclose([h.score for h in result.hits], scores, atol=1e-5)
    if keep_rows < N:  # a filter keeping every row is searched unfiltered; the flat build answers in numpy
        assert (result.engine, result.index_kind) == ("numpy", "flat" if prefilter_max_rows == 0 else "exact")


def test_filters_combine_with_the_glob_and_can_keep_nothing(flat_index) -> None:
    index, x = flat_index
    where = "points < 5000 AND folder IN ('f1', 'f2') AND tag = 't'"
    for limit in (0, 10**9):
        engine = SearchEngine(index)
        engine.prefilter_max_rows = limit
        got = engine.search_item("img-3", "image", 10, SearchFilters(path_glob="img-*1", where=where))[0]
        keep = (np.arange(N) < 5000) & np.isin(np.arange(N) % 7, [1, 2]) & (np.arange(N) % 10 == 1)
        assert [h.path for h in got.hits] == _brute(x, 3, keep, 10)[0]
    assert _search(index, 3, "points < 0", None).hits == []
    assert _search(index, 3, "tag = 'nope'", 0).hits == []


def test_ivf_with_a_selective_filter_is_exact_and_returns_k(ivf_index) -> None:
    index, x = ivf_index
    for keep_rows in (N // 100, 12):
        result = _search(index, 1, f"points < {keep_rows}", None)  # pre-filtered: exact
        assert [h.path for h in result.hits] == _brute(x, 1, np.arange(N) < keep_rows, 10)[0]
        assert result.index_kind == "exact"
    # Through the IVF selector only: its probed lists hold fewer than 10 of the 12 rows, so the search
    # goes over every list and still returns k.
    engine = SearchEngine(index)
    engine.prefilter_max_rows = 0
    ann = engine._index(next(r for r in _routes(engine) if r.target == "image"))
    from avsearch.search.filters import SearchFilters as F  # noqa: N817

    allowed = engine._rows.positions("image", ann.paths, ann.table_version, F(where="points < 12"))
    _, ids = ann.search(x[1:2], 10, allowed)
    assert (ids[0] >= 0).sum() < 10, "the probed lists hold 10 passing rows: the test no longer tests the case"
    result = _search(index, 1, "points < 12", 0)
    assert len(result.hits) == 10 and result.index_kind == ann.params.kind != "flat"
    assert [h.path for h in result.hits] == _brute(x, 1, np.arange(N) < 12, 10)[0]


def _routes(engine: SearchEngine):
    from avsearch.search.planner import plan_routes

    return plan_routes("image", "image", engine.manifest)


# -- metadata written by `avsearch index` ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Shared by the module's tests and never changed by them (a test that edits files edits its own_copy)."""
    root = tmp_path_factory.mktemp("media")
    for i, (w, folder) in enumerate([(24, "field"), (40, "field/dawn"), (64, "studio")]):
        write_image(root / folder / f"pic{i}.png", i, size=w)
    for i, (sec, rate) in enumerate([(0.25, 16000), (1.0, 22050), (2.0, 16000)]):
        write_audio(root / ("field" if i < 2 else "studio") / f"clip{i}.wav", i, seconds=sec, rate=rate)
    write_cloud(root / "shapes" / "c.npy", 0)
    (root / "avsearch-tags.csv").write_text("path,tags\nfield/clip0.wav,bird;dawn\nfield/clip1.wav,frog\n")
    old = datetime(2020, 6, 1).timestamp()
    os.utime(root / "studio" / "clip2.wav", (old, old))
    with unchanged(root, "the metadata tests' media"):
        yield root


def own_copy(media: Path, tmp_path: Path) -> Path:
    """The shared media copied (with their mtimes) for a test that changes files."""
    return Path(shutil.copytree(media, tmp_path / "media"))


def _paths(results, root: Path) -> set[str]:
    return {str(Path(h.path).relative_to(root)) for r in results for h in r.hits}


def test_index_stores_metadata_and_filters_find_it(media: Path, bridge_file: Path, tmp_path: Path) -> None:
    media = own_copy(media, tmp_path)  # its tags file is edited below
    loader = FakeLoader()
    index_dir = tmp_path / "index"
    index_folder(media, index_dir, bridge_file, encoder_loader=loader)
    engine = SearchEngine(Index.open(index_dir, encoder_loader=loader))
    book = engine.store.bookkeeping("audio")
    info = {Path(p).name: r.meta for p, r in book.items()}
    assert info["clip1.wav"].info.sample_rate == 22050 and info["clip1.wav"].info.duration == pytest.approx(1.0)
    assert info["clip0.wav"].tags == ("bird", "dawn") and info["clip2.wav"].tags == ()
    assert (info["clip0.wav"].folder, info["clip2.wav"].folder, info["clip0.wav"].ext) == ("field", "studio", "wav")

    def found(**kw) -> set[str]:
        return _paths(query(engine, text="x", k=20, **kw), media)

    assert found(where="duration > 0.5") == {"field/clip1.wav", "studio/clip2.wav"}
    assert found(where="sample_rate = 22050 or width >= 40") == {
        "field/clip1.wav",
        "field/dawn/pic1.png",
        "studio/pic2.png",
    }
    assert found(where="folder = 'field'") == {"field/clip0.wav", "field/clip1.wav", "field/pic0.png"}
    assert found(where="points = 1500 and modality = 'pointcloud'") == set()  # no 3D bridge: not searched
    assert found(filters=SearchFilters(folder="field", ext=("png",))) == {"field/pic0.png", "field/dawn/pic1.png"}
    assert found(filters=SearchFilters(tags=("bird",))) == {"field/clip0.wav"}
    assert found(where="'frog' in tags or tag = 'dawn'") == {"field/clip0.wav", "field/clip1.wav"}
    assert found(filters=SearchFilters(until="2021-01-01")) == {"studio/clip2.wav"}
    assert found(filters=SearchFilters(since="2021-01-01", min_duration=1.5)) == set()
    assert found(filters=SearchFilters(max_duration=0.5, ext=("wav",))) == {"field/clip0.wav"}

    # Edited tags apply on the next run without re-embedding anything.
    (media / "avsearch-tags.csv").write_text("path,tags\nstudio/clip2.wav,bird\n")
    encoded = loader.files_encoded
    summary = index_folder(media, index_dir, encoder_loader=loader)
    assert summary.retagged == 3 and summary.added == 0 and loader.files_encoded == encoded
    engine = SearchEngine(Index.open(index_dir, encoder_loader=loader))
    assert _paths(query(engine, text="x", k=20, where="tag = 'bird'"), media) == {"studio/clip2.wav"}
    # --tags names another sidecar (JSON lines), instead of the one at the root
    other = tmp_path / "tags.jsonl"
    other.write_text(json.dumps({"path": "studio/pic2.png", "tags": ["cover"]}) + "\n")
    index_folder(media, index_dir, encoder_loader=loader, tags=other)
    engine = SearchEngine(Index.open(index_dir, encoder_loader=loader))
    assert _paths(query(engine, text="x", k=20, where="tag IN ('bird', 'cover')"), media) == {"studio/pic2.png"}


def _rows_as_stored(index_dir: Path, table: str) -> pa.Table:
    """Keys, paths, Lance row ids and every vector column of a table, as stored."""
    dataset = lance.dataset(str(index_dir / "tables" / f"{table}.lance"))
    wanted = [c for c in dataset.schema.names if c in ("key", "path_bytes", "native") or c.startswith("proj_")]
    return dataset.to_table(columns=wanted, with_row_id=True)


def test_an_index_made_before_metadata_columns_gets_them_without_re_embedding(
    media: Path, bridge_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`avsearch index` on an index from before the metadata columns: one commit per table adds them, filled
    from the headers, paths and tags (the values a new index gets); no encoder loads, rows, row ids and
    vectors stay byte for byte, the FAISS builds stay current; filters on the new columns work."""
    index_dir = tmp_path / "index"
    legacy = tables.table_schema
    with monkeypatch.context() as m:  # the table layout of avsearch before metadata filters, and no pass
        m.setattr(tables, "table_schema", lambda dim, shared, metadata=True: legacy(dim, shared, False))
        m.setattr("avsearch.indexing.pipeline.add_metadata_columns", lambda *args: {})
        index_folder(media, index_dir, bridge_file, encoder_loader=FakeLoader())
    engine = SearchEngine(Index.open(index_dir, encoder_loader=FakeLoader()))
    assert "tags" not in engine.store.columns("audio")
    assert _paths(query(engine, text="x", k=20, where="size > 0 and path LIKE '%clip2%'"), media) == {
        "studio/clip2.wav"
    }
    with pytest.raises(InputError) as err:
        query(engine, text="x", where="duration > 1")
    assert str(err.value) == (
        "this index has no 'duration' column (built before metadata filters): run "
        "`avsearch index FOLDER` to add it (from the files' headers, no re-embedding)"
    )
    stored = {t: _rows_as_stored(index_dir, t) for t in ("audio", "image")}
    versions = {t: engine.store.version(t) for t in stored}
    builds = {p.name: json.loads(p.read_text())["build"] for p in (index_dir / "ann").glob("*.json")}

    loader = FakeLoader()  # what the command would load encoders with: nothing may be loaded
    monkeypatch.setattr("avsearch.store.index.default_loader", lambda *args, **kwargs: loader)
    run = CliRunner().invoke(app, ["index", str(media), "--index-dir", str(index_dir), "-q"])
    assert run.exit_code == 3 and "shapes/c.npy: a pointcloud file" in run.stderr, run.output  # no 3D bridge
    assert loader.loaded == {}
    for table, rows in (("audio", 3), ("image", 3)):
        assert (
            f"table {table}: metadata columns added ({rows} rows filled from the files' headers, nothing "
            "re-embedded); --where filters on them now work"
        ) in run.stdout
        assert _rows_as_stored(index_dir, table).equals(stored[table])
        assert engine.store.version(table) == versions[table] + 1  # one commit
    for p in (index_dir / "ann").glob("*.json"):  # the same builds, current for the new versions
        meta = json.loads(p.read_text())
        assert meta["build"] == builds[p.name] and meta["table_version"] == versions[p.name.split(".")[0]] + 1

    fresh = tmp_path / "fresh"  # the metadata a new index stores
    index_folder(media, fresh, bridge_file, encoder_loader=FakeLoader())
    engine = SearchEngine(Index.open(index_dir, encoder_loader=FakeLoader()))
    for table in ("audio", "image"):
        want = {p: r.meta for p, r in Index.open(fresh).tables.bookkeeping(table).items()}
        assert {p: r.meta for p, r in engine.store.bookkeeping(table).items()} == want
    assert _paths(query(engine, text="x", k=20, where="duration > 1"), media) == {"studio/clip2.wav"}
    assert _paths(query(engine, text="x", k=20, where="tag = 'bird' or width >= 40"), media) == {
        "field/clip0.wav",
        "field/dawn/pic1.png",
        "studio/pic2.png",
    }


def test_cli_filters(flat_index) -> None:
    index, x = flat_index
    runner = CliRunner()
    base = ["query", "--id", "img-1", "--target", "image", "--index-dir", str(index.path), "-k", "3"]
    ok = runner.invoke(app, [*base, "--where", "points < 50 and folder = 'f1'", "--paths-only"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.split() == _brute(x, 1, (np.arange(N) < 50) & (np.arange(N) % 7 == 1), 3)[0]
    flags = runner.invoke(app, [*base, "--folder", "f1", "--tag", "t", "--paths-only"])
    assert flags.exit_code == 0 and flags.stdout.split() == _brute(x, 1, np.arange(N) % 7 == 1, 3)[0]
    bad = runner.invoke(app, [*base, "--where", "points < 5; drop table image"])
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("avsearch: error: filter 'points < 5; drop table image': unexpected character ';'")


def test_modality_means_the_file_kind_in_every_backend(tmp_path: Path, bridge_file: Path) -> None:
    """`modality = 'audio'` keeps the sounds of a second backend's table too (named cavmae_audio); the
    encoders are the test-only fakes (FakeLoader answers CAV-MAE names with a 768-d fake)."""
    root = tmp_path / "m"
    for i in range(3):
        write_audio(root / f"s{i}.wav", i)
        write_image(root / f"i{i}.png", i)
    index_folder(root, tmp_path / "index", [bridge_file], encoder_loader=FakeLoader(), backend="both")
    engine = SearchEngine(Index.open(tmp_path / "index", encoder_loader=FakeLoader()))
    for where, n in (("modality = 'audio'", 3), ("modality != 'audio'", 0)):
        results = engine.search_file(root / "s0.wav", "audio", "audio", 5, SearchFilters(where=where), "both")
        assert [(r.backend, len(r.hits)) for r in results] == [("cmcr", n), ("cavmae", n)], where
    assert render(parse_where("modality = 'image'"), "cavmae_image") == "('image' = 'image')"
