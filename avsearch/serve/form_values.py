"""Numbers from the API's text fields (multipart forms and query strings), read strictly.

`str.isdigit()` accepts '²' and '①' (which `int()` then refuses: a 500) and `int()`/`float()` accept
' 5', '٣', '1_000', 'nan' and 'inf'. Here a whole number is ASCII digits only, a number the plain decimal
forms, finite: anything else is a 400 with one line naming the field and the value.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic_core import PydanticCustomError

from avsearch.errors import InputError

MAX_DIGITS = 18  # every whole-number field is far below 10**18, and so is int64
MAX_CHARS = 40  # of a decimal number
_WHOLE = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")  # [0-9], not \d: \d takes every script's digits
_SIGNED = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}")
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 20 else value[:20] + "...")


def _whole(value: str, negative: bool) -> int:
    """The reason (ValueError) is the message without the field's name."""
    if (_SIGNED if negative else _WHOLE).fullmatch(value) is None:
        allowed = "an optional '-', then " if negative else ""
        raise ValueError(
            f"Input should be a valid integer ({allowed}1 to {MAX_DIGITS} ASCII digits 0-9, no space), "
            f"got {_shown(value)}"
        )
    return int(value)


def _finite(value: str) -> float:
    number = float(value) if len(value) <= MAX_CHARS and _DECIMAL.fullmatch(value) else None
    if number is None or not math.isfinite(number):
        raise ValueError(f"Input should be a finite decimal number such as 0.25, got {_shown(value)}")
    return number


def whole_number(value: str | None, name: str, *, negative: bool = False) -> int | None:
    """A form field as a whole number (None when absent or empty); InputError naming `name` otherwise."""
    if not value:
        return None
    try:
        return _whole(value, negative)
    except ValueError as exc:
        raise InputError(f"{name}: {exc}") from None


def finite_number(value: str | None, name: str) -> float | None:
    """A form field as a finite float (None when absent or empty); InputError naming `name` otherwise."""
    if not value:
        return None
    try:
        return _finite(value)
    except ValueError as exc:
        raise InputError(f"{name}: {exc}") from None


def query_whole(value: Any) -> Any:
    """pydantic BeforeValidator for an int query parameter: the same rule as a form field's."""
    if not isinstance(value, str):
        return value  # a default, not client text
    try:
        return _whole(value, negative=False)
    except ValueError as exc:
        raise PydanticCustomError("int_parsing", "{reason}", {"reason": str(exc)}) from None


def query_finite(value: Any) -> Any:
    """pydantic BeforeValidator for a float query parameter: pydantic itself takes 'nan' and 'inf'."""
    if not isinstance(value, str):
        return value
    try:
        return _finite(value)
    except ValueError as exc:
        raise PydanticCustomError("float_parsing", "{reason}", {"reason": str(exc)}) from None
