"""Command-line values parsed without pydantic where Typer's answer is certain.

Typer (0.2x) turns every option's text into its type through a pydantic TypeAdapter that it builds when
the option is first parsed, absent options and --help included: a cold command pays for importing pydantic
and building one adapter per option (about 0.1 s of `avsearch info`, more for query's thirty options) to
get a str, an int, a float, a bool or a Path. For those types, a value whose result is not in doubt is
parsed here as the adapter parses it: a str or a bool as it is, an integer or a decimal written in plain
digits within the option's bounds, a Path from a non-empty str (then Typer's own path checks). Anything
else (a malformed number, one out of range, another type) goes to Typer's adapter, so its answers and its
error messages stay Typer's. The CLI's commands and groups (cli/commands.py) are made of the classes below.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args, get_origin

from typer._click import Context
from typer.core import TyperCommand, TyperGroup

try:  # the runtime coercion layer of Typer >= 0.2x (before it, Typer used click's types: nothing to do)
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer._param_types import coerce_cli_path, routes_to_path
except ImportError:  # pragma: no cover
    RuntimeParam = None  # type: ignore[assignment,misc]

_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")  # what int() and pydantic read alike
_DECIMAL = re.compile(r"-?[0-9]{1,17}(\.[0-9]{1,17})?")
_LEAVES = (str, int, float, bool, Path)
_TYPER = object()  # "not certain: ask Typer's adapter"


def plain_param(param: Any) -> None:
    """Give `param` the plain parser when its type allows it (and Typer has not parsed it yet)."""
    descriptor = getattr(param, "type_descriptor", None)
    if RuntimeParam is None or descriptor is None or getattr(param, "_runtime_param", 0) is not None:
        return
    info = descriptor.parameter_info
    if descriptor.is_file or descriptor.is_choice or info.parser is not None or info.clamp:
        return
    annotation = descriptor.annotation
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation) or (None,)
    if annotation in _LEAVES:
        param._runtime_param = _PlainParam(info, descriptor.annotation, descriptor)


class PlainParams:
    """For a Typer command or group: its options (and its --help, made on first use) parse plainly."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            plain_param(param)

    def get_help_option(self, ctx: Context) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            plain_param(option)
        return option


class PlainCommand(PlainParams, TyperCommand):
    """A Typer command whose plain options parse without pydantic."""


class PlainGroup(PlainParams, TyperGroup):
    """A Typer group whose plain options parse without pydantic."""


if RuntimeParam is not None:

    class _PlainParam(RuntimeParam):  # a frozen dataclass: fields parameter_info, annotation
        def __init__(self, parameter_info: Any, annotation: Any, descriptor: Any) -> None:
            super().__init__(parameter_info=parameter_info, annotation=annotation)
            object.__setattr__(self, "descriptor", descriptor)  # Typer's own adapter is built from it

        def _coerce_value(self, value: Any, param: Any, ctx: Context) -> Any:
            annotation = self.annotation
            if get_origin(annotation) is list:
                (leaf,) = get_args(annotation)
                items = value if isinstance(value, (list, tuple)) else [value]
                parsed = [self._leaf(leaf, item, param, ctx) for item in items]
                if _TYPER not in parsed:
                    return parsed
            else:
                parsed = self._leaf(annotation, value, param, ctx)
                if parsed is not _TYPER:
                    return parsed
            return build_runtime_param(self.descriptor)._coerce_value(value, param=param, ctx=ctx)

        def _leaf(self, annotation: Any, value: Any, param: Any, ctx: Context) -> Any:
            info = self.parameter_info
            if annotation is str:
                return value if isinstance(value, str) else _TYPER
            if annotation is bool:
                return value if isinstance(value, bool) else _TYPER
            if annotation is Path or routes_to_path(annotation, info):
                path_type = info.path_type or annotation
                if not isinstance(value, (str, Path)) or value == "" or not _is_path_class(path_type):
                    return _TYPER
                return coerce_cli_path(Path(value), info, path_type=path_type, param=param, ctx=ctx)
            if annotation is int:
                number = value if type(value) is int else int(value) if _full(_INT, value) else None
            elif annotation is float:
                number = value if type(value) is float else float(value) if _full(_DECIMAL, value) else None
            else:
                return _TYPER
            if number is None or (info.min is not None and number < info.min):
                return _TYPER
            return _TYPER if info.max is not None and number > info.max else number


def _is_path_class(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, Path)


def _full(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None
