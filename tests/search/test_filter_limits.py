"""Number and date literals of the filter language at and past the limits of their columns' types: refused
when parsed (one line naming the value and the range), never passed on to LanceDB, which would fail
inside the query (read as a damaged table, 503); valid extremes and fractions on integer columns run on a
real LanceDB table with the index's schema and select the rows exact arithmetic says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.errors import DamagedIndexError, InputError
from avsearch.indexing.vectors import index_embeddings
from avsearch.search.engine import SearchFilters
from avsearch.search.filters import COLUMNS, NUMBER, parse_where, render
from avsearch.store.index import Index
from avsearch.store.table_schema import META_FIELDS, table_schema
from avsearch.store.tables import MediaStore

I64 = (-(2**63), 2**63 - 1)
I32 = (-(2**31), 2**31 - 1)
DIGITS_400 = "9" * 400
NUMBER_COLUMNS = sorted(name for name, col in COLUMNS.items() if col.kind == NUMBER)


def _refusal(text: str) -> str:
    with pytest.raises(InputError) as err:
        parse_where(text)
    message = str(err.value)
    assert "\n" not in message and message.startswith("filter ")
    return message


def test_every_number_column_is_known_with_its_stored_type() -> None:
    """The ranges below follow the table schema: a column whose type changes must change COLUMNS too."""
    stored = {f.name: f.type for f in table_schema(4, {}).remove_metadata()}
    bits = {pa.int32(): 32, pa.int64(): 64, pa.float64(): 0}
    assert NUMBER_COLUMNS == ["duration", "height", "points", "sample_rate", "size", "width"]
    for name in NUMBER_COLUMNS:
        assert COLUMNS[name].bits == bits[stored[COLUMNS[name].stored]], name
    assert stored["mtime_ns"] == pa.int64()
    assert {f.name for f in META_FIELDS} >= {"duration", "sample_rate", "width", "height", "points"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"size > {DIGITS_400}", "size: 9999999999999999... (400 characters) is out of range"),
        (f"size > -{DIGITS_400}", "size: -999999999999999... (401 characters) is out of range"),
        ("size = -9223372036854775809", "size: -9223372036854775809 is out of range (-9223372036854775808 to "),
        ("size = 9223372036854775808", "size: 9223372036854775808 is out of range"),
        ("size > 1e308", "size: 1e+308 is out of range (-9223372036854775808 to 9223372036854775807)"),
        ("size between 0 and 1e19", "size: 1e+19 is out of range"),
        ("points in (1, -1e19)", "points: -1e+19 is out of range"),
        ("width > 2147483648", "width: 2147483648 is out of range (-2147483648 to 2147483647)"),
        ("height < -2147483649", "height: -2147483649 is out of range"),
        ("sample_rate = 1e10", "sample_rate: 10000000000.0 is out of range"),
        (f"duration > {DIGITS_400}", "duration: 9999999999999999... (400 characters) is out of range (a 64-bit float)"),
        ("duration > 1e309", "number 1e309 out of range"),
        ("mtime < '0001-01-01'", "mtime: '0001-01-01' is out of range (dates from 1677-09-22 to 2262-04-10)"),
        ("mtime < '0001-01-01T00:00:00+00:00'", "mtime: '0001-01-01T00:00:00+00:00' is out of range"),
        ("mtime > '9999-12-31'", "mtime: '9999-12-31' is out of range"),
        ("mtime > '9999-12-31T23:59:59-14:00'", "is out of range"),
        ("mtime >= '2262-04-12'", "mtime: '2262-04-12' is out of range"),
        ("mtime < '1677-09-20'", "mtime: '1677-09-20' is out of range"),
        ("mtime < '1677-09-21T00:12:43.145224+00:00'", "is out of range"),  # 776 ns before int64's least
        ("mtime between '2020-01-01' and '3000-01-01'", "mtime: '3000-01-01' is out of range"),
        ("mtime in ('2020-01-01', '1000-01-01')", "mtime: '1000-01-01' is out of range"),
    ],
)
def test_literals_past_their_column_type_are_refused_in_one_line(text: str, reason: str) -> None:
    assert reason in _refusal(text)


@pytest.mark.parametrize("name", NUMBER_COLUMNS)
def test_extremes_of_every_number_column(name: str) -> None:
    stored = table_schema(4, {}).field(COLUMNS[name].stored).type
    if pa.types.is_integer(stored):
        low, high = -(2 ** (stored.bit_width - 1)), 2 ** (stored.bit_width - 1) - 1
        for bad in (high + 1, low - 1, "1e308", "-1e308", DIGITS_400):
            assert f"{name}: " in _refusal(f"{name} > {bad}")
        for good in (low, high, f"{float(high // 2):e}", "1.5", "-0.5"):
            parse_where(f"{name} >= {good}")
    else:
        for bad in (DIGITS_400, f"-{DIGITS_400}", "1e309", "-1e309"):
            assert "out of range" in _refusal(f"{name} > {bad}")
        for good in ("1e308", "-1e308", "9" * 300, "0.5"):
            parse_where(f"{name} < {good}")


def test_valid_values_keep_compiling() -> None:
    assert render(parse_where("size > 0"), "audio") == "(size > 0)"
    assert render(parse_where("duration > 1.5"), "audio") == "(duration > 1.5)"
    assert render(parse_where("width >= 1e3"), "image") == "(width >= 1000)"  # LanceDB takes no 1000.0 there
    assert render(parse_where("mtime < '2026-01-01T00:00:00+00:00'"), "audio") == f"(mtime_ns < {1767225600 * 10**9})"
    # -9223372036854775808 in SQL is minus an unsigned number, a float LanceDB refuses
    assert render(parse_where("size = -9223372036854775808"), "audio") == "(size = (-9223372036854775807 - 1))"
    parse_where("mtime >= '2026-01-01' and mtime between '1677-09-22' and '2262-04-10'")


def test_shortcut_dates_past_the_range_are_refused_not_overflowing() -> None:
    with pytest.raises(InputError, match=r"'9999-12-31' is out of range"):
        SearchFilters(until="9999-12-31")  # the day after overflowed date
    with pytest.raises(InputError, match=r"'0001-01-01' is out of range"):
        SearchFilters(since="0001-01-01")


# -- on a real table -------------------------------------------------------------------------------------------

_ROWS = {  # key -> the number columns (None: no value, as a sound has no width)
    "zero": {"size": 0, "mtime_ns": 0, "width": 1, "height": 1, "sample_rate": 16000, "points": 1, "duration": 0.5},
    "top": {"size": I64[1], "mtime_ns": I64[1], "width": I32[1], "height": I32[0], "sample_rate": I32[1],
            "points": I64[0], "duration": 1e308},
    "bottom": {"size": I64[0], "mtime_ns": I64[0], "width": I32[0]},
    "two": {"size": 2, "width": 2},
}  # fmt: skip
ALL = set(_ROWS)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> MediaStore:
    """An index's "audio" table (its real schema) holding _ROWS."""
    store = MediaStore(tmp_path_factory.mktemp("limits"))
    store.ensure_table("audio", 2, {})
    schema = table_schema(2, {})
    columns: dict[str, list] = {f.name: [] for f in schema}
    for key, values in _ROWS.items():
        row = {"key": key, "path": key, "path_bytes": key.encode(), "native": [0.0, 1.0], **values}
        for name in columns:
            columns[name].append(row.get(name))
    store._table("audio").add(pa.table(columns, schema=schema))
    return store


def _keys(store: MediaStore, predicate: str) -> set[str]:
    """The rows passing a predicate, as filters run it (MediaStore.filter_rows, Lance row ids)."""
    version = store.version("audio")
    rowids, paths = store.row_ids("audio", version)
    key = dict(zip(rowids.tolist(), (p.decode() for p in paths.to_pylist()), strict=True))
    return {key[r] for r in store.filter_rows("audio", predicate, version).tolist()}


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("size = -9223372036854775808", {"bottom"}),
        ("size >= -9223372036854775808", ALL),
        ("size > -9223372036854775808", {"zero", "top", "two"}),
        ("size = 9223372036854775807", {"top"}),
        ("size >= 9.2e18", {"top"}),
        ("size > 1.5", {"top", "two"}),
        ("size >= 1.5", {"top", "two"}),
        ("size < 1.5", {"zero", "bottom"}),
        ("size <= -0.5", {"bottom"}),
        ("size = 1.5", set()),
        ("size <> 1.5", ALL),
        ("NOT size = 1.5", ALL),
        ("size IN (1.5, 2)", {"two"}),
        ("size NOT IN (1.5)", ALL),
        ("size IN (0.5, 1.5)", set()),
        ("size BETWEEN 0.5 AND 2.5", {"two"}),
        ("size BETWEEN -0.5 AND 2.5", {"zero", "two"}),
        ("size NOT BETWEEN 0.5 AND 2.5", {"zero", "top", "bottom"}),
        ("width > 1e3", {"top"}),
        ("width = 2147483647", {"top"}),
        ("width = -2147483648", {"bottom"}),
        ("width BETWEEN 1.5 AND 2147483646.5", {"two"}),
        ("height <= -2147483648", {"top"}),
        ("height <> 1.5", {"zero", "top"}),  # a row without a height passes neither way
        ("NOT height = 1.5", {"zero", "top"}),
        ("NOT height IN (1.5)", {"zero", "top"}),
        ("sample_rate >= 2147483647", {"top"}),
        ("points = -9223372036854775808", {"top"}),
        ("points IN (1, -9223372036854775808)", {"zero", "top"}),
        ("duration > 1e307", {"top"}),
        (f"duration < {'9' * 30}", {"zero"}),
        ("duration > -9223372036854775808", {"zero", "top"}),
        ("mtime >= '2262-04-11T23:47:16.854775+00:00'", {"top"}),
        ("mtime < '1677-09-21T00:12:43.145225+00:00'", {"bottom"}),
        ("mtime = '1970-01-01T00:00:00+00:00'", {"zero"}),
    ],
)
def test_extremes_and_fractions_run_on_lancedb_exactly(store: MediaStore, text: str, keys: set) -> None:
    assert _keys(store, render(parse_where(text), "audio")) == keys


def test_a_filter_lancedb_refuses_is_not_a_damaged_table(store: MediaStore) -> None:
    """Were a literal to get past the parser, LanceDB's refusal is the filter's fault (400), not damage (503
    and "rebuild the index")."""
    for predicate in ("(size > 1.5)", "(width > 3000000000)", "(size > -9223372036854775808)"):
        with pytest.raises(InputError, match="filter on table 'audio' cannot be evaluated") as err:
            store.filter_rows("audio", predicate, store.version("audio"))
        assert not isinstance(err.value, DamagedIndexError) and "\n" not in str(err.value)


# -- the command line -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory, bridge_file: Path) -> Path:
    tmp = tmp_path_factory.mktemp("cli-limits")
    (tmp / "vectors").mkdir()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 512)).astype(np.float32)
    np.save(tmp / "vectors" / "image.clip.npy", x / np.linalg.norm(x, axis=1, keepdims=True))
    rows = (json.dumps({"source": f"img-{i}", "points": i}) for i in range(20))
    (tmp / "vectors" / "image.clip.rows.jsonl").write_text("\n".join(rows) + "\n")
    with Index.update(tmp / "index", bridges=[bridge_file]) as index:
        index_embeddings(tmp / "vectors", index)
    return tmp / "index"


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        (f"points > {DIGITS_400}", "points: 9999999999999999... (400 characters) is out of range"),
        ("mtime < '0001-01-01'", "mtime: '0001-01-01' is out of range"),
        ("size > 1e308", "size: 1e+308 is out of range"),
    ],
)
def test_cli_refuses_in_one_line(small_index: Path, where: str, reason: str) -> None:
    base = ["query", "--id", "img-1", "--target", "image", "--index-dir", str(small_index), "--paths-only"]
    bad = CliRunner().invoke(app, [*base, "--where", where])
    assert bad.exit_code == 1 and "Traceback" not in bad.output, bad.output
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avsearch: error: filter ") and reason in lines[0], bad.stderr
    ok = CliRunner().invoke(app, [*base, "--where", "points < 3.5 and size >= 0 and mtime >= '1677-09-22'"])
    assert ok.exit_code == 0, ok.output
    assert sorted(ok.stdout.split()) == ["img-0", "img-2", "img-3"]
