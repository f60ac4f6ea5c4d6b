"""The filter language's terms: the columns users see (COLUMNS), the nodes of a parsed filter, the
one-line refusal every problem becomes, and the dates `mtime` compares with (to_ns)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from avsearch.errors import InputError

TEXT, NUMBER, TIME, TAGS = "text", "number", "time", "tags"


@dataclass(frozen=True)
class Column:
    kind: str
    stored: str  # table column ("" for modality: a constant per table)
    help: str
    metadata: bool = True  # a metadata column: missing from indexes made before metadata filters
    bits: int = 64  # NUMBER: the stored integer's width (int32, int64); 0 for a float64 column


COLUMNS: dict[str, Column] = {
    "modality": Column(TEXT, "", "audio, image or pointcloud", metadata=False),
    "path": Column(TEXT, "path", "the file's path as printed", metadata=False),
    "folder": Column(TEXT, "folder", "directory relative to the indexed root ('' at the root)"),
    "ext": Column(TEXT, "ext", "extension, lower case, no dot"),
    "size": Column(NUMBER, "size", "bytes", metadata=False),
    "mtime": Column(TIME, "mtime_ns", "modification time (ISO date/time)", metadata=False),
    "duration": Column(NUMBER, "duration", "seconds (audio)", bits=0),
    "sample_rate": Column(NUMBER, "sample_rate", "Hz (audio)", bits=32),
    "width": Column(NUMBER, "width", "pixels (images)", bits=32),
    "height": Column(NUMBER, "height", "pixels (images)", bits=32),
    "points": Column(NUMBER, "points", "points or mesh vertices (point clouds)"),
    "tag": Column(TAGS, "tags", "user tags from the sidecar"),
}
# LanceDB converts a literal to its column's type, and one that does not convert (past int32/int64, 1.5 on
# an integer column) fails inside the query, where it reads as a damaged table (503). So literals are
# refused at parse time outside the column's type (mtime: int64 nanoseconds), one line naming the range,
# and a fraction on an integer column is rendered as the exact integer comparison (sql.py).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MTIME_RANGE = "1677-09-22 to 2262-04-10"  # dates whose nanoseconds since 1970 fit an int64, in any zone


def _help() -> str:
    return f"columns: {', '.join(COLUMNS)}; operators: = != < <= > >= IN LIKE BETWEEN IS NULL AND OR NOT"


def filter_error(text: str, problem: str) -> InputError:
    """The one-line refusal of filter `text`: the problem, then the columns and operators there are."""
    return InputError(f"filter {text[:200]!r}: {problem} ({_help()})")


# -- the tree -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    op: str  # "and", "or", "not", "cmp", "in", "like", "null", "between", "has"
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Ref:
    name: str  # a key of COLUMNS


@dataclass(frozen=True)
class Lit:
    value: str | float | int


def shown_name(x: Ref | Lit) -> str:
    """An operand as a message names it: a column by its name, a literal by its repr."""
    return x.name if isinstance(x, Ref) else repr(x.value)


def to_ns(value: str, text: str = "") -> int:
    """An ISO date or date-time (local time without a zone) -> nanoseconds since the epoch.
    InputError for a non-date and for a date outside MTIME_RANGE (mtime_ns is int64)."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise filter_error(
            text or value, f"{value!r} is not a date such as '2026-01-01' or '2026-01-01T08:30'"
        ) from exc
    out_of_range = filter_error(text or value, f"mtime: {value!r} is out of range (dates from {MTIME_RANGE})")
    try:
        if when.tzinfo is None:
            when = when.astimezone()  # the searching machine's local time
        since = when - _EPOCH  # exact, where timestamp()'s float is not at int64's ends
    except (ValueError, OverflowError, OSError):  # year 0 or 10000 after the zone shift, or past time_t
        raise out_of_range from None
    ns = (since.days * 86_400 + since.seconds) * 1_000_000_000 + since.microseconds * 1000
    if not INT64_MIN <= ns <= INT64_MAX:
        raise out_of_range
    return ns
