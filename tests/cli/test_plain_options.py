"""Options parsed without pydantic (cli/plain_options.py) give Typer's answers: on every option of every
command, the same value of the same type, or the same error, as Typer's own adapter for that option, on
values a user may type (well-formed, malformed, out of range, empty, with spaces) and on the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

import typer.main
from typer._click import Context
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param

from avsearch.cli.app import app
from avsearch.cli.plain_options import _PlainParam

TYPED = {
    str: ["x", "", " a b ", "-5", "s3://bucket//path", "ünï"],
    int: ["0", "1", "-3", "10", "007", "+5", " 5", "5.0", "abc", "1e3", "", "99999999999999999999", "1_000", 10, 0],
    float: ["0.5", "1", "-2.25", "1e-3", "inf", "nan", ".5", "5.", "abc", "", " 1", "0,5", "1_0.5", 0.5, 3],
    bool: [True, False, "true", "1", "no", "", " yes "],
    Path: ["x.wav", "", ".", "-", "/", "dir/", "a//b", Path("y"), "~/z"],
}


def _answer(runtime: Any, value: Any, param: Any, ctx: Context) -> tuple[Any, ...]:
    try:
        got = runtime.coerce(value, param=param, ctx=ctx)
    except BadParameter as exc:
        return ("error", exc.format_message())
    return ("value", repr(got), type(got), [type(v) for v in got] if isinstance(got, list) else None)  # nan: repr


def _commands() -> list[Any]:
    """Every command and group of `avsearch`, the root and `eval` included."""
    root = typer.main.get_command(app)
    found = [root]
    for name in root.list_commands(Context(root)):
        command = root.get_command(Context(root), name)
        found += [command, *getattr(command, "commands", {}).values()]
    return found


def test_every_plain_option_answers_as_typer_does(tmp_path: Path) -> None:
    plain = 0
    for command in _commands():
        ctx = Context(command)
        for param in [*command.params, command.get_help_option(ctx)]:
            runtime = param.get_runtime_param()
            if not isinstance(runtime, _PlainParam):
                continue
            plain += 1
            typer_own = build_runtime_param(param.type_descriptor)
            annotation = param.type_descriptor.annotation
            is_list = get_origin(annotation) is list
            leaf = get_args(annotation)[0] if is_list else annotation
            values = [param.default, *TYPED[leaf]]
            if is_list:
                values = [None, [], *([v] for v in TYPED[leaf]), TYPED[leaf][:3], tuple(TYPED[leaf][:2])]
            for value in values:
                where = f"{command.name} {param.name}={value!r}"
                assert _answer(runtime, value, param, ctx) == _answer(typer_own, value, param, ctx), where
    assert plain >= 150  # query's, index's, ... str, int, float, bool and Path options, --help (about 175)
