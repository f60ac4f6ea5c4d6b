"""`avsearch weights`: list every model weight file as present or missing, with size and source."""

from __future__ import annotations

import typer
from rich.table import Table

from avsearch.cli.common import WeightsDirOption, out, user_errors


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@user_errors
def weights_command(
    weights_dir: WeightsDirOption = None,
) -> None:
    """List the upstream weight files: present or missing, size, and where to get each one."""
    from avsearch.encoders.weights import weights_folder, weights_status

    folder = weights_folder(weights_dir)
    shown = folder if folder else "(none: set --weights-dir or AVSEARCH_WEIGHTS)"
    table = Table(title=f"weights folder: {shown}")
    for column in ("file", "status", "size", "found at / source"):
        table.add_column(column, overflow="fold")
    for status in weights_status(weights_dir):
        wf = status.file
        if status.path is not None:
            row = (
                wf.name,
                f"[green]present[/] ({status.where})",
                _human(status.path.stat().st_size),
                str(status.path),
            )
        else:
            row = (wf.name, "[red]missing[/]", wf.size, wf.source)
        table.add_row(*row)
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("weights")(weights_command)
