"""Bad numbers and dates over HTTP: every one a 400 with {"error": one line}, never a 500 or a 503, and never
quietly read as something else (' 5' and '٣' as 5 and 3, threshold=nan as null). Covers `where` literals
past their columns' types (search/filters/checks.py), the numeric parameters k, top and threshold from query strings and
from multipart forms (serve/form_values.py). The index is made with the test-only FAKE encoder
(conftest.py); localize/match are only asked to parse their parameters: a valid value reaches the unknown
picture id and gets 404, which shows it was accepted without loading a model."""

from __future__ import annotations

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from avsearch.errors import InputError
from avsearch.search.filters import COLUMNS, NUMBER
from avsearch.serve.form_values import finite_number, whole_number
from avsearch.store.table_schema import table_schema
from tests.serve.conftest import Library

DIGITS_400 = "9" * 400
NO_SUCH_ID = "0" * 32


def _refused(r, *reasons: str) -> str:  # noqa: ANN001 - httpx.Response
    assert r.status_code == 400, (r.status_code, r.text[:300])
    body = r.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    assert "\n" not in body["error"] and "Traceback" not in r.text and "internal error" not in body["error"]
    for reason in reasons:
        assert reason in body["error"], body["error"]
    return body["error"]


def _extremes() -> list[tuple[str, str]]:
    """(filter, what the refusal names) past every number column's type, and past mtime's dates."""
    cases = []
    stored = {f.name: f.type for f in table_schema(4, {})}
    for name, col in COLUMNS.items():
        if col.kind != NUMBER:
            continue
        if pa.types.is_integer(stored[col.stored]):
            high = 2 ** (stored[col.stored].bit_width - 1)
            values = [str(high), str(-high - 1), "1e308", "-1e308", DIGITS_400, f"-{DIGITS_400}"]
        else:
            values = [DIGITS_400, f"-{DIGITS_400}", "1e309"]
        cases += [(f"{name} > {v}", "out of range") for v in values]
    cases += [(f"mtime < '{d}'", "mtime: ") for d in ("0001-01-01", "1677-09-20", "2262-04-12", "9999-12-31")]
    cases += [("mtime >= '0001-01-01T00:00:00+00:00'", "mtime: "), ("mtime > '9999-12-31T23:59:59-14:00'", "mtime: ")]
    return cases


# -- where -------------------------------------------------------------------------------------------------

ISSUE_WHERE = [
    (f"size > {DIGITS_400}", "size: 9999999999999999... (400 characters) is out of range"),
    ("mtime < '0001-01-01'", "mtime: '0001-01-01' is out of range (dates from 1677-09-22 to 2262-04-10)"),
    ("size = -9223372036854775809", "size: -9223372036854775809 is out of range"),
    ("size > 1e308", "size: 1e+308 is out of range (-9223372036854775808 to 9223372036854775807)"),
    ("mtime > '2300-01-01'", "mtime: '2300-01-01' is out of range"),
]


@pytest.mark.parametrize(("where", "reason"), ISSUE_WHERE + _extremes())
def test_where_literals_past_their_type_are_400(client: TestClient, where: str, reason: str) -> None:
    _refused(client.get("/api/search", params={"text": "x", "where": where}), "filter ", reason)


@pytest.mark.parametrize(("where", "reason"), ISSUE_WHERE)
def test_where_on_uploads_and_similar_items_too(client: TestClient, library: Library, where: str, reason: str) -> None:
    sound = library.sounds[0].read_bytes()
    _refused(client.post("/api/search", files={"file": ("a.wav", sound)}, data={"where": where}), reason)
    r = client.get(f"/api/items/{library.id(library.images[0])}/similar", params={"where": where})
    _refused(r, reason)


@pytest.mark.parametrize(
    ("where", "target", "hits"),
    [
        ("size > 0", "image", 3),
        ("mtime >= '2026-01-01'", "audio", 3),  # the library is written by the test
        ("mtime >= '1677-09-22' and mtime <= '2262-04-10'", "audio", 3),
        ("size >= -9223372036854775808 and size <= 9223372036854775807", "audio", 3),
        ("width > 1.5 and width < 1e3", "image", 3),  # fractions and 1e3 on an int32 column
        ("height = 64.5", "image", 0),
        ("sample_rate BETWEEN 0.5 AND 2147483647", "audio", 3),
        ("points >= 1 and points <= 9223372036854775807", "pointcloud", 2),
        ("duration > -1e308 and duration < 1e308", "audio", 3),
    ],
)
def test_valid_extremes_keep_working(client: TestClient, where: str, target: str, hits: int) -> None:
    r = client.get("/api/search", params={"text": "x", "k": 3, "target": target, "where": where})
    assert r.status_code == 200, r.text
    assert all(len(rs["hits"]) == hits for rs in r.json()["results"]), r.json()


# -- k, top, threshold ---------------------------------------------------------------------------------------

NOT_WHOLE = ["²", "①", "٣", " 5", "5 ", "+5", "-5", "5.0", "1e2", "1_000", "0x10", "５", "5\n", DIGITS_400]
NOT_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", " 0.5", "0x1p-2", "½", "٠.٥", "0.5\n"]


@pytest.mark.parametrize("k", NOT_WHOLE)
def test_k_must_be_ascii_digits_on_every_search(client: TestClient, library: Library, k: str) -> None:
    _refused(client.get("/api/search", params={"text": "x", "k": k}), "k: ")
    _refused(client.get(f"/api/items/{library.id(library.images[0])}/similar", params={"k": k}), "k: ")
    upload = client.post("/api/search", files={"file": ("a.wav", library.sounds[0].read_bytes())}, data={"k": k})
    _refused(upload, "k: Input should be a valid integer")


def test_k_raw_in_the_query_string(client: TestClient) -> None:
    """Percent-encoded as a client sends it: ² is %C2%B2."""
    for raw in ("%C2%B2", "%E2%91%A0", "%D9%A3", "%205", "+5"):
        _refused(client.get(f"/api/search?text=x&k={raw}"), "k: ")


def test_valid_k_keeps_working(client: TestClient, library: Library) -> None:
    assert len(client.get("/api/search", params={"text": "x", "k": "2"}).json()["results"][0]["hits"]) == 2
    upload = client.post("/api/search", files={"file": ("a.wav", library.sounds[0].read_bytes())}, data={"k": "2"})
    assert upload.status_code == 200 and upload.json()["query"]["k"] == 2
    default = client.post("/api/search", files={"file": ("a.wav", library.sounds[0].read_bytes())}, data={"k": ""})
    assert default.status_code == 200 and default.json()["query"]["k"] == 10
    _refused(client.get("/api/search", params={"text": "x", "k": "0"}), "k must be between 1 and")
    _refused(client.get("/api/search", params={"text": "x", "k": "1001"}), "k must be between 1 and")


@pytest.mark.parametrize("top", NOT_WHOLE)
def test_top_must_be_ascii_digits(client: TestClient, library: Library, top: str) -> None:
    params = {"audio_id": library.id(library.sounds[0]), "image_id": NO_SUCH_ID, "top": top}
    _refused(client.get("/api/localize", params=params), "top: ")
    fields = {"image_id": NO_SUCH_ID, "top": top}
    upload = client.post("/api/localize", files={"file": ("a.wav", library.sounds[0].read_bytes())}, data=fields)
    _refused(upload, "top: Input should be a valid integer")


@pytest.mark.parametrize("threshold", NOT_FINITE)
def test_threshold_must_be_a_finite_number(client: TestClient, library: Library, threshold: str) -> None:
    params = {"audio_id": library.id(library.sounds[0]), "image_id": NO_SUCH_ID, "threshold": threshold}
    _refused(client.get("/api/match", params=params), "threshold: Input should be a finite")
    fields = {"image_id": NO_SUCH_ID, "threshold": threshold}
    upload = client.post("/api/match", files={"file": ("a.wav", library.sounds[0].read_bytes())}, data=fields)
    _refused(upload, "threshold: Input should be a finite")


def test_valid_top_and_threshold_are_accepted(client: TestClient, library: Library) -> None:
    """They pass parsing and reach the picture id, unknown here: 404, not 400."""
    sound = library.sounds[0]
    for path, name, value in (("/api/localize", "top", "3"), ("/api/match", "threshold", "-0.25")):
        r = client.get(path, params={"audio_id": library.id(sound), "image_id": NO_SUCH_ID, name: value})
        assert r.status_code == 404, r.text
        fields = {"image_id": NO_SUCH_ID, name: value}
        r = client.post(path, files={"file": ("a.wav", sound.read_bytes())}, data=fields)
        assert r.status_code == 404, r.text


def test_one_parser_for_form_fields() -> None:
    assert whole_number("12", "k") == 12 and whole_number("", "k") is None and whole_number(None, "k") is None
    assert whole_number("-3", "n", negative=True) == -3
    assert finite_number("0.25", "t") == 0.25 and finite_number("-1e-3", "t") == -0.001
    assert finite_number("+.5", "t") == 0.5 and finite_number("3", "t") == 3.0
    for bad in NOT_WHOLE:
        with pytest.raises(InputError, match=r"^k: Input should be a valid integer \(1 to 18 ASCII digits") as err:
            whole_number(bad, "k")
        assert "\n" not in str(err.value)
    for bad in NOT_FINITE:
        with pytest.raises(InputError, match=r"^t: Input should be a finite decimal number") as err:
            finite_number(bad, "t")
        assert "\n" not in str(err.value)
