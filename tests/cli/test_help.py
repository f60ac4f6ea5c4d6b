"""Help text wraps at the terminal's width: a docstring's paragraph is one line when it fits, and no
line is wider than the terminal."""

from __future__ import annotations

import inspect

import pytest
from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.cli.commands import COMMANDS, module_app
from avsearch.cli.common import reflow

runner = CliRunner()


def _commands() -> list[tuple[list[str], str]]:
    """(argv prefix, docstring) of every command, sub-commands included (each module's commands)."""
    found = []
    for module in dict.fromkeys(COMMANDS.values()):
        registered = module_app(module)
        for info in registered.registered_commands:
            found.append(([info.name], inspect.getdoc(info.callback) or ""))
        for group in registered.registered_groups:
            for info in group.typer_instance.registered_commands:
                found.append(([group.name, info.name], inspect.getdoc(info.callback) or ""))
    assert sorted(argv[0] for argv, _ in found if len(argv) == 1) == sorted(set(COMMANDS) - {"eval"})
    return found


def _help(argv: list[str], columns: int) -> list[str]:
    result = runner.invoke(app, [*argv, "--help"], env={"COLUMNS": str(columns), "TERMINAL_WIDTH": ""})
    assert result.exit_code == 0, result.output
    return [line.strip(" │") for line in result.stdout.splitlines()]


def test_reflow_joins_lines_within_paragraphs_only() -> None:
    doc = "First line\n    goes on.\n\n    Second paragraph\n    also goes on.\n\n    - a list\n    - stays\n"
    assert reflow(doc) == "First line goes on.\n\nSecond paragraph also goes on.\n\n- a list\n- stays"
    assert reflow("\b\nkept\nas is") == "\b\nkept\nas is"


def test_paragraphs_fill_a_wide_terminal() -> None:
    """COLUMNS=200: a paragraph that fits is one line; a longer one fills the width, whatever the source's
    line breaks (docstrings break at ~100 columns)."""
    broken_in_source = 0
    for argv, doc in _commands():
        lines = _help(argv, 200)
        for source, paragraph in zip(inspect.cleandoc(doc).split("\n\n"), reflow(doc).split("\n\n"), strict=True):
            start = next(i for i, line in enumerate(lines) if line and paragraph.startswith(line[:40]))
            shown = [lines[start]]
            while len(" ".join(shown)) < len(paragraph):
                shown.append(lines[start + len(shown)])
            where = f"avsearch {' '.join(argv)} --help: {paragraph[:50]!r}..."
            assert " ".join(shown) == paragraph, where
            if len(paragraph) <= 197:  # 200 columns less the panel's margin
                assert len(shown) == 1, where
            else:
                assert len(shown[0]) > 180, where
            broken_in_source += "\n" in source
    assert broken_in_source >= 3  # e.g. index's, embed's and query's multi-line paragraphs were seen


@pytest.mark.parametrize("argv", [["query"], ["index"], ["eval", "retrieval"]])
def test_help_wraps_at_a_narrow_terminal(argv: list[str]) -> None:
    result = runner.invoke(app, [*argv, "--help"], env={"COLUMNS": "60", "TERMINAL_WIDTH": ""})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 60
