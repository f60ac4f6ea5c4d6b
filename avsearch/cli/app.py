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

GC_EVERY = 20_000  # allocations between young-generation collections in a command's process (default 700)


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
    # A command imports its modules first (lance, pyarrow, numpy, rich; torch on some routes): hundreds of
    # thousands of long-lived objects, which collections every 700 allocations (the default) rescan again
    # and again (about 5% of a cold `avsearch info`'s CPU). Every 20,000 still bounds cyclic garbage.
    gc.set_threshold(GC_EVERY, 10, 10)
    try:
        with stage("command"):
            app()
    finally:
        # At exit Python garbage-collects every object torch, transformers and the models made: 1-2 s
        # after a query on CPU, for memory the OS frees anyway. Frozen objects are left out of those
        # collections; atexit handlers and ordinary (reference-count) destructors still run.
        gc.freeze()
