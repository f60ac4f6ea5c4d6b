"""The Typer application and the error boundary shared by every command."""

from __future__ import annotations

import gc
import logging
import sys

import typer

from avsearch import __version__
from avsearch.cli.commands import LazyGroup
from avsearch.timings import stage

app = typer.Typer(
    name="avsearch",
    help="Cross-modal search over sound, pictures, text and 3D shapes (C-MCR bridges).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=LazyGroup,  # each command's module imported when the command is looked up (cli/commands.py)
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"avsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main() -> None:
    """Console-script entry point."""
    try:
        with stage("command"):
            app()
    finally:
        # At exit Python garbage-collects every object torch, transformers and the models made: 1-2 s
        # after a query on CPU, for memory the OS frees anyway. Frozen objects are left out of those
        # collections; atexit handlers and ordinary (reference-count) destructors still run.
        gc.freeze()
