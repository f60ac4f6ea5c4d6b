"""Text -> a checked filter tree: the tokenizer and a recursive-descent parser of the filter language
(the package docstring), each predicate checked as it is read (checks.py)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from avsearch.search.filters.checks import typed
from avsearch.search.filters.terms import COLUMNS, Lit, Node, Ref, filter_error, shown_name

_ALIASES = {"tags": "tag"}
_KEYWORDS = {"and", "or", "not", "in", "like", "is", "null", "between"}
_COMPARE = {"=": "=", "==": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_FLIP = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<str>'(?:[^']|'')*')"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><=|>=|<>|!=|==|[=<>(),-]))"
)
MAX_LENGTH = 4000  # characters; a filter arrives over HTTP too
MAX_DEPTH = 50  # nesting of parentheses and NOT


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
                raise filter_error(text, f"{what} at position {at}")
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
            raise filter_error(self.text, f"expected {value or 'more'}, found {found}")
        self.i += 1
        return self.tokens[self.i - 1]

    def parse(self) -> Node:
        if not self.tokens:
            raise filter_error(self.text, "empty filter")
        node = self.expr()
        if self.peek():
            kind, value, at = self.tokens[self.i]
            raise filter_error(self.text, f"unexpected {value!r} at position {at}")
        return node

    def expr(self) -> Node:
        return self._joined("or", self.conj)

    def conj(self) -> Node:
        return self._joined("and", self.neg)

    def _joined(self, word: str, item: Callable[[], Node]) -> Node:
        """`item (word item)*`: a single item as it is, several under one `word` node."""
        items = [item()]
        while self.peek(word):
            self.take()
            items.append(item())
        return items[0] if len(items) == 1 else Node(word, tuple(items))

    def neg(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise filter_error(self.text, f"nested deeper than {MAX_DEPTH} levels")
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
                raise filter_error(self.text, f"expected a number after '-' at position {at}")
            value = "-" + value
        if kind == "num":
            number = float(value) if any(c in value for c in ".eE") else int(value)
            if isinstance(number, float) and not math.isfinite(number):  # a long int: the column's range
                raise filter_error(self.text, f"number {value} out of range")
            return Lit(number)
        if kind == "str":
            return Lit(value[1:-1].replace("''", "'"))
        if kind == "name" and value not in _KEYWORDS:
            if self.peek("("):
                raise filter_error(self.text, f"function calls are not allowed ({value}(...) at position {at})")
            name = _ALIASES.get(value, value)
            if name not in COLUMNS:
                raise filter_error(self.text, f"unknown column {value!r} at position {at}")
            return Ref(name)
        raise filter_error(self.text, f"unexpected {value!r} at position {at}")

    def predicate(self) -> Node:
        left = self.operand()
        negated = False
        if self.peek("not"):
            self.take()
            negated = True
            if not (self.peek("in") or self.peek("like") or self.peek("between")):
                raise filter_error(self.text, "NOT here must be followed by IN, LIKE or BETWEEN")
        if self.peek("in"):
            self.take()
            if isinstance(left, Lit) and self.peek() and self.tokens[self.i][1] in ("tags", "tag"):
                self.take()  # 'bird' IN tags
                return typed(self.text, Node("has", (Ref("tag"), (left,), negated)))
            self.take("(")
            values = [self.operand()]
            while self.peek(","):
                self.take()
                values.append(self.operand())
            self.take(")")
            return typed(self.text, Node("in", (left, tuple(values), negated)))
        if self.peek("like"):
            self.take()
            return typed(self.text, Node("like", (left, self.operand(), negated)))
        if self.peek("between"):
            self.take()
            low = self.operand()
            self.take("and")
            return typed(self.text, Node("between", (left, low, self.operand(), negated)))
        if self.peek("is"):
            self.take()
            negated = self.peek("not")
            if negated:
                self.take()
            self.take("null")
            return typed(self.text, Node("null", (left, negated)))
        if self.peek() and self.tokens[self.i][0] == "op" and self.tokens[self.i][1] in _COMPARE:
            op = _COMPARE[self.take()[1]]
            right = self.operand()
            if isinstance(left, Lit):  # 5 < duration -> duration > 5
                left, right, op = right, left, _FLIP[op]
            return typed(self.text, Node("cmp", (left, op, right)))
        found = f"{self.tokens[self.i][1]!r}" if self.peek() else "the end"
        raise filter_error(self.text, f"expected a comparison after {shown_name(left)}, found {found}")


def parse_where(text: str) -> Node:
    """Parse and type-check a filter expression; InputError (one line) naming the problem otherwise."""
    if len(text) > MAX_LENGTH:
        raise filter_error(text, f"longer than {MAX_LENGTH} characters")
    return _Parser(text).parse()
