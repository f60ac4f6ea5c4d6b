"""PLACEHOLDER: replaced by the module that implements this command."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
