"""Metadata filters: the `--where` language, the flags that compile into it, and SearchFilters.

The language is a small, safe subset of SQL over the columns users see (COLUMNS), e.g.
`duration > 5 and folder = 'field'`, `ext in ('wav', 'flac') or tag = 'bird'`, `mtime >= '2026-01-01'`:
- comparisons = == != <> < <= > >=, [NOT] IN (...), [NOT] LIKE '...' (% and _; \\ escapes),
  [NOT] BETWEEN a AND b, IS [NOT] NULL, AND, OR, NOT, parentheses;
- single-quoted strings ('' for a quote), numbers (a leading minus allowed), a column on at least one
  side of each comparison (column to column between two numbers or two texts: `width > height`);
- a number must fit its column's type (size, points: int64; sample_rate, width, height: int32; duration:
  a finite float64), a date mtime's int64 nanoseconds (MTIME_RANGE): else a one-line refusal;
- `mtime` compares with ISO dates or date-times ('2026-01-01', '2026-01-01T08:30', '...+02:00'); without
  a zone they are the searching machine's local time, as `ls -l` shows it;
- tags: `tag = 'bird'`, `tag != 'bird'`, `tag IN ('bird', 'frog')` (any of them), `'bird' IN tags`;
  stored as a list<string> column and compiled to DataFusion's array_has / array_has_any;
- `ext` literals are normalised (`'.WAV'` is `'wav'`); `modality` is the table's own ('audio', ...).
Nothing else parses: no functions, no subqueries, no semicolons, no unknown names. The parsed tree is
rendered back to SQL by this module (names mapped to table columns, strings re-quoted, numbers
re-printed), so the predicate LanceDB receives never holds user text outside a quoted literal.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from avsearch.errors import InputError
from avsearch.store.manifest import table_modality
from avsearch.store.tables import MediaStore

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
_ALIASES = {"tags": "tag"}
_KEYWORDS = {"and", "or", "not", "in", "like", "is", "null", "between"}
_COMPARE = {"=": "=", "==": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_FLIP = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<str>'(?:[^']|'')*')"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><=|>=|<>|!=|==|[=<>(),-]))"
)
MAX_LENGTH = 4000  # characters; a filter arrives over HTTP too
# LanceDB converts a literal to its column's type, and one that does not convert (past int32/int64, 1.5 on
# an integer column) fails inside the query, where it reads as a damaged table (503). So literals are
# refused at parse time outside the column's type (mtime: int64 nanoseconds), one line naming the range,
# and a fraction on an integer column is rendered as the exact integer comparison (render).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MTIME_RANGE = "1677-09-22 to 2262-04-10"  # dates whose nanoseconds since 1970 fit an int64, in any zone
MAX_DEPTH = 50  # nesting of parentheses and NOT


def _help() -> str:
    return f"columns: {', '.join(COLUMNS)}; operators: = != < <= > >= IN LIKE BETWEEN IS NULL AND OR NOT"


def _error(text: str, problem: str) -> InputError:
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


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize(text)
        self.i = 0
        self.depth = 0

    def _tokenize(self, text: str) -> list[tuple[str, str, int]]:
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                at = len(text) - len(text[pos:].lstrip())
                what = "an unterminated string" if text[at] == "'" else f"unexpected character {text[at]!r}"
                raise _error(text, f"{what} at position {at}")
            kind = m.lastgroup or ""
            value = m.group(kind)
            tokens.append((kind, value.lower() if kind == "name" else value, m.start(kind)))
            pos = m.end()
        return tokens

    def peek(self, value: str | None = None) -> bool:
        if self.i >= len(self.tokens):
            return False
        return value is None or (self.tokens[self.i][1] == value and self.tokens[self.i][0] in ("name", "op"))

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        if not self.peek(value):
            found = f"{self.tokens[self.i][1]!r} at position {self.tokens[self.i][2]}" if self.peek() else "the end"
            raise _error(self.text, f"expected {value or 'more'}, found {found}")
        self.i += 1
        return self.tokens[self.i - 1]

    def parse(self) -> Node:
        if not self.tokens:
            raise _error(self.text, "empty filter")
        node = self.expr()
        if self.peek():
            kind, value, at = self.tokens[self.i]
            raise _error(self.text, f"unexpected {value!r} at position {at}")
        return node

    def expr(self) -> Node:
        items = [self.conj()]
        while self.peek("or"):
            self.take()
            items.append(self.conj())
        return items[0] if len(items) == 1 else Node("or", tuple(items))

    def conj(self) -> Node:
        items = [self.neg()]
        while self.peek("and"):
            self.take()
            items.append(self.neg())
        return items[0] if len(items) == 1 else Node("and", tuple(items))

    def neg(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(self.text, f"nested deeper than {MAX_DEPTH} levels")
        try:
            if self.peek("not"):
                self.take()
                return Node("not", (self.neg(),))
            if self.peek("("):
                self.take("(")
                node = self.expr()
                self.take(")")
                return node
            return self.predicate()
        finally:
            self.depth -= 1

    def operand(self) -> Ref | Lit:
        kind, value, at = self.take()
        if kind == "op" and value == "-":
            kind, value, at = self.take()
            if kind != "num":
                raise _error(self.text, f"expected a number after '-' at position {at}")
            value = "-" + value
        if kind == "num":
            number = float(value) if any(c in value for c in ".eE") else int(value)
            if isinstance(number, float) and not math.isfinite(number):  # a long int: the column's range
                raise _error(self.text, f"number {value} out of range")
            return Lit(number)
        if kind == "str":
            return Lit(value[1:-1].replace("''", "'"))
        if kind == "name" and value not in _KEYWORDS:
            if self.peek("("):
                raise _error(self.text, f"function calls are not allowed ({value}(...) at position {at})")
            name = _ALIASES.get(value, value)
            if name not in COLUMNS:
                raise _error(self.text, f"unknown column {value!r} at position {at}")
            return Ref(name)
        raise _error(self.text, f"unexpected {value!r} at position {at}")

    def predicate(self) -> Node:
        left = self.operand()
        negated = False
        if self.peek("not"):
            self.take()
            negated = True
            if not (self.peek("in") or self.peek("like") or self.peek("between")):
                raise _error(self.text, "NOT here must be followed by IN, LIKE or BETWEEN")
        if self.peek("in"):
            self.take()
            if isinstance(left, Lit) and self.peek() and self.tokens[self.i][1] in ("tags", "tag"):
                self.take()  # 'bird' IN tags
                return _typed(self.text, Node("has", (Ref("tag"), (left,), negated)))
            self.take("(")
            values = [self.operand()]
            while self.peek(","):
                self.take()
                values.append(self.operand())
            self.take(")")
            return _typed(self.text, Node("in", (left, tuple(values), negated)))
        if self.peek("like"):
            self.take()
            return _typed(self.text, Node("like", (left, self.operand(), negated)))
        if self.peek("between"):
            self.take()
            low = self.operand()
            self.take("and")
            return _typed(self.text, Node("between", (left, low, self.operand(), negated)))
        if self.peek("is"):
            self.take()
            negated = self.peek("not")
            if negated:
                self.take()
            self.take("null")
            return _typed(self.text, Node("null", (left, negated)))
        if self.peek() and self.tokens[self.i][0] == "op" and self.tokens[self.i][1] in _COMPARE:
            op = _COMPARE[self.take()[1]]
            right = self.operand()
            if isinstance(left, Lit):  # 5 < duration -> duration > 5
                left, right, op = right, left, _FLIP[op]
            return _typed(self.text, Node("cmp", (left, op, right)))
        found = f"{self.tokens[self.i][1]!r}" if self.peek() else "the end"
        raise _error(self.text, f"expected a comparison after {_name(left)}, found {found}")


def _name(x: Ref | Lit) -> str:
    return x.name if isinstance(x, Ref) else repr(x.value)


def _typed(text: str, node: Node) -> Node:
    """Check a predicate's operand types; tags comparisons become "has" nodes. Raises InputError."""
    left = node.args[0]
    if not isinstance(left, Ref):
        raise _error(text, f"{_name(left)}: a comparison needs a column on one side")
    col = COLUMNS[left.name]
    if node.op == "null":
        if col.kind == TAGS:
            raise _error(text, "tag IS NULL: use NOT tag IN (...) or compare tags with =")
        return node
    if col.kind == TAGS:
        if node.op == "cmp" and node.args[1] in ("=", "<>") and _is_text(node.args[2]):
            return Node("has", (left, (node.args[2],), node.args[1] == "<>"))
        if node.op == "in" and all(_is_text(v) for v in node.args[1]):
            return Node("has", (left, node.args[1], node.args[2]))
        if node.op == "has":
            return node
        raise _error(text, "tag takes =, != or IN with quoted strings")
    if node.op == "like" and (col.kind != TEXT or not _is_text(node.args[1])):
        raise _error(text, f"LIKE needs a text column and a quoted pattern, not {left.name}")
    values = {"cmp": node.args[2:], "in": node.args[1], "between": node.args[1:3], "like": node.args[1:2]}[node.op]
    for v in values:
        _check_value(text, left.name, col, v)
    return node


def _is_text(x: Any) -> bool:
    return isinstance(x, Lit) and isinstance(x.value, str)


def _check_value(text: str, name: str, col: Column, v: Ref | Lit) -> None:
    if isinstance(v, Ref):
        other = COLUMNS[v.name]
        if other.kind != col.kind or col.kind not in (TEXT, NUMBER):
            raise _error(text, f"{name} and {v.name} cannot be compared")
        return
    if col.kind == NUMBER and not isinstance(v.value, (int, float)):
        raise _error(text, f"{name} compares with numbers, not {v.value!r}")
    if col.kind == NUMBER:
        _check_range(text, name, col, v.value)
    if col.kind == TEXT and not isinstance(v.value, str):
        raise _error(text, f"{name} compares with quoted text, not {v.value!r}")
    if col.kind == TIME:
        if not isinstance(v.value, str):
            raise _error(text, f"mtime compares with a quoted date such as '2026-01-01', not {v.value!r}")
        to_ns(v.value, text)


def _shown(number: float) -> str:
    """A number for a message: a 400-digit literal is shown by its start and its length."""
    shown = str(number) if isinstance(number, int) else repr(number)
    return shown if len(shown) <= 24 else f"{shown[:16]}... ({len(shown)} characters)"


def _check_range(text: str, name: str, col: Column, number: float) -> None:
    """A number literal must fit the column's type: int32/int64, or float64 (finite: checked when read)."""
    if col.bits:
        low, high = -(2 ** (col.bits - 1)), 2 ** (col.bits - 1) - 1
        if not low <= number <= high:  # int and float compare exactly
            raise _error(text, f"{name}: {_shown(number)} is out of range ({low} to {high})")
    elif isinstance(number, int):
        try:
            float(number)
        except OverflowError:
            raise _error(text, f"{name}: {_shown(number)} is out of range (a 64-bit float)") from None


def to_ns(value: str, text: str = "") -> int:
    """An ISO date or date-time (local time without a zone) -> nanoseconds since the epoch.
    InputError for a non-date and for a date outside MTIME_RANGE (mtime_ns is int64)."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise _error(text or value, f"{value!r} is not a date such as '2026-01-01' or '2026-01-01T08:30'") from exc
    out_of_range = _error(text or value, f"mtime: {value!r} is out of range (dates from {MTIME_RANGE})")
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


def parse_where(text: str) -> Node:
    """Parse and type-check a filter expression; InputError (one line) naming the problem otherwise."""
    if len(text) > MAX_LENGTH:
        raise _error(text, f"longer than {MAX_LENGTH} characters")
    return _Parser(text).parse()


# -- rendering as DataFusion SQL ---------------------------------------------------------------------


def columns_used(node: Node) -> set[str]:
    """The user-facing column names a parsed filter reads."""
    out: set[str] = set()
    for arg in node.args:
        if isinstance(arg, Node):
            out |= columns_used(arg)
        elif isinstance(arg, Ref):
            out.add(arg.name)
        elif isinstance(arg, tuple):
            out |= {a.name for a in arg if isinstance(a, Ref)}
    return out


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _sql_value(x: Ref | Lit, column: str, modality: str) -> str:
    """An operand as SQL; literals are rendered for the column they are compared with."""
    if isinstance(x, Ref):
        # the table's file modality: a second backend's table ("cavmae_audio") holds sounds too
        return _quote(table_modality(modality)) if x.name == "modality" else COLUMNS[x.name].stored
    if column == "mtime":
        return _int_sql(to_ns(str(x.value)))
    if isinstance(x.value, str):
        return _quote(x.value.strip().lstrip(".").lower() if column == "ext" else x.value)
    if COLUMNS[column].kind == NUMBER and COLUMNS[column].bits and float(x.value).is_integer():
        return _int_sql(int(x.value))  # 1e6 on an integer column: LanceDB takes no float literal there
    if isinstance(x.value, int) and INT64_MIN < x.value <= INT64_MAX:
        return str(x.value)
    return repr(float(x.value))  # a float, or a whole number past int64 for a float column (checked to fit)


def _int_sql(n: int) -> str:
    # SQL reads -9223372036854775808 as minus an unsigned 9223372036854775808, a float LanceDB refuses
    return "(-9223372036854775807 - 1)" if n == INT64_MIN else str(n)


def _fraction(x: Ref | Lit, column: str) -> float | None:
    """The literal when it is a fraction (1.5) compared with an integer column, else None."""
    col = COLUMNS[column]
    if isinstance(x, Ref) or not isinstance(x.value, float) or col.kind != NUMBER or not col.bits:
        return None
    return None if x.value.is_integer() else x.value


def _no_row(col: str, negated: bool = False) -> str:
    """False (negated: true) on every row with a value; NULL stays NULL for a row without one, as a
    comparison's would (so NOT around it keeps SQL's meaning)."""
    return f"({col} {'=' if negated else '<>'} {col})"


def _whole_cmp(col: str, op: str, x: float) -> str:
    """`col op x` for an integer column and a fraction x, exactly, with an integer literal: col > 1.5 is
    col >= 2, col <= 1.5 is col < 2; col = 1.5 holds for no row."""
    if op in ("=", "<>"):
        return _no_row(col, negated=op == "<>")
    return f"({col} {'>=' if op in ('>', '>=') else '<'} {math.ceil(x)})"


def render(node: Node, modality: str) -> str:
    """The SQL predicate of a parsed filter on `modality`'s table (only names from COLUMNS, re-quoted literals)."""
    if node.op in ("and", "or"):
        return "(" + f" {node.op.upper()} ".join(render(n, modality) for n in node.args) + ")"
    if node.op == "not":
        return f"(NOT {render(node.args[0], modality)})"
    left: Ref = node.args[0]
    col = _sql_value(left, left.name, modality)
    if node.op == "cmp":
        fraction = _fraction(node.args[2], left.name)
        if fraction is not None:
            return _whole_cmp(col, node.args[1], fraction)
        return f"({col} {node.args[1]} {_sql_value(node.args[2], left.name, modality)})"
    if node.op == "in":
        kept = [v for v in node.args[1] if _fraction(v, left.name) is None]  # a fraction equals no integer
        if not kept:
            return _no_row(col, negated=node.args[2])
        values = ", ".join(_sql_value(v, left.name, modality) for v in kept)
        return f"({col} {'NOT IN' if node.args[2] else 'IN'} ({values}))"
    if node.op == "like":
        return f"({col} {'NOT LIKE' if node.args[2] else 'LIKE'} {_sql_value(node.args[1], 'path', modality)})"
    if node.op == "between":
        bounds = [(v, _fraction(v, left.name)) for v in node.args[1:3]]
        # a fraction between integers: BETWEEN 1.5 AND 3.5 is BETWEEN 2 AND 3 on an integer column
        low, high = (
            _sql_value(v, left.name, modality) if f is None else _int_sql(rounding(f))
            for (v, f), rounding in zip(bounds, (math.ceil, math.floor), strict=True)
        )
        return f"({'NOT ' if node.args[3] else ''}({col} BETWEEN {low} AND {high}))"
    if node.op == "null":
        return f"({col} IS {'NOT NULL' if node.args[1] else 'NULL'})"
    # "has": tags holding one (or any of several) strings
    values = [_quote(v.value) for v in node.args[1]]
    test = (
        f"array_has({col}, {values[0]})"
        if len(values) == 1
        else f"array_has_any({col}, make_array({', '.join(values)}))"
    )
    return f"(NOT {test})" if node.args[2] else f"({test})"


# -- SearchFilters ---------------------------------------------------------------------------------------


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _until(value: str) -> str:
    """--until D: through the end of day D when D is a bare date, else through D itself."""
    try:
        day = date.fromisoformat(value.strip())
        return f"mtime < {_quote((day + timedelta(days=1)).isoformat())}"
    except (ValueError, OverflowError):  # not a bare date, or 9999-12-31 (refused by the parser's range check)
        return f"mtime <= {_quote(value)}"


@dataclass(frozen=True)
class SearchFilters:
    """Optional filters on the rows searched; every one given must hold (AND).

    path_glob: fnmatch pattern on the full path, e.g. "*/birds/*". where: an expression of the filter
    language (module docstring). The others are the command line's shortcuts and compile into the same
    language: ext (any of), folder (that folder or below, relative to the indexed root), min/max
    duration (seconds, inclusive), tags (every one), since/until (mtime; a bare --until date counts
    through its whole day). Invalid filters raise InputError when constructed.
    """

    path_glob: str | None = None
    where: str | None = None
    ext: tuple[str, ...] = ()
    folder: str | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    tags: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    parsed: Node | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ext", tuple(self.ext))
        object.__setattr__(self, "tags", tuple(self.tags))
        text = self.expression()
        object.__setattr__(self, "parsed", parse_where(text) if text is not None else None)

    def expression(self) -> str | None:
        """The whole filter (where plus the flags) in the filter language; None when there is none."""
        parts = [f"({self.where})"] if self.where is not None and self.where.strip() else []
        if self.ext:
            parts.append(f"ext IN ({', '.join(_quote(e) for e in self.ext)})")
        folder = (self.folder or "").strip("/")
        if folder:
            parts.append(f"(folder = {_quote(folder)} OR folder LIKE {_quote(_like_escape(folder) + '/%')})")
        if self.min_duration is not None:
            parts.append(f"duration >= {float(self.min_duration)!r}")
        if self.max_duration is not None:
            parts.append(f"duration <= {float(self.max_duration)!r}")
        parts += [f"tag = {_quote(t)}" for t in self.tags]
        if self.since is not None:
            parts.append(f"mtime >= {_quote(self.since)}")
        if self.until is not None:
            parts.append(_until(self.until))
        if len(parts) == 1 and self.where is not None and self.where.strip():
            return self.where  # as typed, so an error's positions are the user's
        return " AND ".join(parts) or None

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return self.parsed is not None or self.path_glob is not None

    def predicate(self, modality: str, table_columns: list[str]) -> str | None:
        """The SQL predicate on `modality`'s table; InputError when the table lacks a metadata column."""
        if self.parsed is None:
            return None
        for name in sorted(columns_used(self.parsed)):
            col = COLUMNS[name]
            if col.stored and col.stored not in table_columns:
                raise InputError(
                    f"this index has no {name!r} column (built before metadata filters): run "
                    "`avsearch index FOLDER --rebuild` to add it"
                )
        return render(self.parsed, modality)


# -- evaluation -------------------------------------------------------------------------------------------


def glob_positions(paths: list[str], glob: str) -> np.ndarray:
    """Positions (int64) of the paths matching an fnmatch pattern."""
    return np.array([i for i, p in enumerate(paths) if fnmatch.fnmatch(p, glob)], dtype=np.int64)


class RowSelector:
    """Which rows pass SearchFilters, as positions in a row list (a FAISS index's paths, or the paths of
    an exact scan) of one table version. The `where` part runs in LanceDB on the table pinned at that
    version and comes back as Lance row ids, mapped to positions through a per-version map built once;
    recent results are cached, so repeated queries with one filter skip the scan."""

    def __init__(self, store: MediaStore, cache_size: int = 8) -> None:
        self.store = store
        self.cache_size = cache_size
        self._map: dict[str, tuple[tuple[int, int], list[str], np.ndarray, np.ndarray]] = {}
        # (modality, version, id(paths), filters) -> (paths, positions); holding `paths` keeps its id unique
        self._cache: OrderedDict[tuple[Any, ...], tuple[list[str], np.ndarray | None]] = OrderedDict()
        self._lock = threading.Lock()

    def positions(
        self, modality: str, paths: list[str], version: int, filters: SearchFilters | None
    ) -> np.ndarray | None:
        """Sorted int64 positions in `paths` (the rows of `modality`'s table at `version`) that pass
        `filters`; None when there is no filter."""
        if filters is None or not filters.active:
            return None
        key = (modality, version, id(paths), filters)
        with self._lock:  # concurrent searches: the LRU order is one structure
            if key in self._cache and self._cache[key][0] is paths:
                self._cache.move_to_end(key)
                return self._cache[key][1]
        keep = None
        if filters.parsed is not None:
            predicate = filters.predicate(modality, self.store.columns(modality))
            keep = self._where(modality, paths, version, predicate or "true")
        if filters.path_glob is not None:
            matched = glob_positions(paths, filters.path_glob)
            keep = matched if keep is None else np.intersect1d(keep, matched, assume_unique=True)
        with self._lock:
            self._cache[key] = (paths, keep)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return keep

    def _where(self, modality: str, paths: list[str], version: int, predicate: str) -> np.ndarray:
        rowids = self.store.filter_rows(modality, predicate, version)
        sorted_ids, positions = self._row_map(modality, paths, version)
        at = np.searchsorted(sorted_ids, rowids)
        found = at < len(sorted_ids)
        found[found] &= sorted_ids[at[found]] == rowids[found]
        out = positions[at[found]]
        return np.sort(out[out >= 0])

    def _row_map(self, modality: str, paths: list[str], version: int) -> tuple[np.ndarray, np.ndarray]:
        """(Lance row ids sorted, the position in `paths` of each; -1 for a row not in `paths`)."""
        cached = self._map.get(modality)
        if cached is None or cached[0] != (version, id(paths)) or cached[1] is not paths:
            rowids, path_bytes = self.store.row_ids(modality, version)
            wanted = pa.array([os.fsencode(p) for p in paths], pa.binary())
            positions = pc.index_in(path_bytes, value_set=wanted).fill_null(-1).to_numpy().astype(np.int64)
            order = np.argsort(rowids, kind="stable")
            cached = ((version, id(paths)), paths, rowids[order], positions[order])
            self._map[modality] = cached
        return cached[2], cached[3]
