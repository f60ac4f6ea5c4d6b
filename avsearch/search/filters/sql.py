"""A checked filter tree -> the SQL predicate LanceDB (DataFusion) runs on one table: only names from
COLUMNS, literals re-quoted and re-printed for the column they meet."""

from __future__ import annotations

import math

from avsearch.search.filters.terms import COLUMNS, INT64_MAX, INT64_MIN, NUMBER, Lit, Node, Ref, to_ns
from avsearch.store.manifest import table_modality


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


def quote(s: str) -> str:
    """A string as a SQL literal (a quote inside doubled)."""
    return "'" + s.replace("'", "''") + "'"


def _sql_value(x: Ref | Lit, column: str, modality: str) -> str:
    """An operand as SQL; literals are rendered for the column they are compared with."""
    if isinstance(x, Ref):
        # the table's file modality: a second backend's table ("cavmae_audio") holds sounds too
        return quote(table_modality(modality)) if x.name == "modality" else COLUMNS[x.name].stored
    if column == "mtime":
        return _int_sql(to_ns(str(x.value)))
    if isinstance(x.value, str):
        return quote(x.value.strip().lstrip(".").lower() if column == "ext" else x.value)
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
    values = [quote(v.value) for v in node.args[1]]
    test = (
        f"array_has({col}, {values[0]})"
        if len(values) == 1
        else f"array_has_any({col}, make_array({', '.join(values)}))"
    )
    return f"(NOT {test})" if node.args[2] else f"({test})"
