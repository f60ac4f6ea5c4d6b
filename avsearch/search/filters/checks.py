"""A parsed predicate checked against its column: operand kinds, and number literals that fit the
column's stored type (int32, int64, finite float64); tag comparisons become "has" nodes."""

from __future__ import annotations

from typing import Any

from avsearch.search.filters.terms import (
    COLUMNS,
    NUMBER,
    TAGS,
    TEXT,
    TIME,
    Column,
    Lit,
    Node,
    Ref,
    filter_error,
    shown_name,
    to_ns,
)


def typed(text: str, node: Node) -> Node:
    """Check a predicate's operand types; tags comparisons become "has" nodes. Raises InputError."""
    left = node.args[0]
    if not isinstance(left, Ref):
        raise filter_error(text, f"{shown_name(left)}: a comparison needs a column on one side")
    col = COLUMNS[left.name]
    if node.op == "null":
        if col.kind == TAGS:
            raise filter_error(text, "tag IS NULL: use NOT tag IN (...) or compare tags with =")
        return node
    if col.kind == TAGS:
        if node.op == "cmp" and node.args[1] in ("=", "<>") and _is_text(node.args[2]):
            return Node("has", (left, (node.args[2],), node.args[1] == "<>"))
        if node.op == "in" and all(_is_text(v) for v in node.args[1]):
            return Node("has", (left, node.args[1], node.args[2]))
        if node.op == "has":
            return node
        raise filter_error(text, "tag takes =, != or IN with quoted strings")
    if node.op == "like" and (col.kind != TEXT or not _is_text(node.args[1])):
        raise filter_error(text, f"LIKE needs a text column and a quoted pattern, not {left.name}")
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
            raise filter_error(text, f"{name} and {v.name} cannot be compared")
        return
    if col.kind == NUMBER and not isinstance(v.value, (int, float)):
        raise filter_error(text, f"{name} compares with numbers, not {v.value!r}")
    if col.kind == NUMBER:
        _check_range(text, name, col, v.value)
    if col.kind == TEXT and not isinstance(v.value, str):
        raise filter_error(text, f"{name} compares with quoted text, not {v.value!r}")
    if col.kind == TIME:
        if not isinstance(v.value, str):
            raise filter_error(text, f"mtime compares with a quoted date such as '2026-01-01', not {v.value!r}")
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
            raise filter_error(text, f"{name}: {_shown(number)} is out of range ({low} to {high})")
    elif isinstance(number, int):
        try:
            float(number)
        except OverflowError:
            raise filter_error(text, f"{name}: {_shown(number)} is out of range (a 64-bit float)") from None
