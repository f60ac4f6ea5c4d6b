"""The `avsearch` command line: thin Typer commands over the Python API.

Each command module registers itself on the app; only this layer turns AvsearchError into one line on
stderr and exit code 1.
"""

from __future__ import annotations

from avsearch.cli.app import app, main

__all__ = ["app", "main"]
