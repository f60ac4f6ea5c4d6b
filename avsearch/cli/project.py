"""`avsearch project`: native embeddings of one space -> the bridge's shared space."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from avsearch.cli.common import err, user_errors


def register(app: typer.Typer) -> None:
    app.command("project")(project_command)


@user_errors
def project_command(
    src: Annotated[Path, typer.Argument(help="Input .npy array (N, dim) of native embeddings.")],
    dst: Annotated[Path, typer.Argument(help="Output .npy array (N, out_dim), L2-normalised.")],
    bridge: Annotated[
        Path, typer.Option("--bridge", "-b", help="Bridge file (.safetensors, or a released C-MCR .pt).")
    ],
    space: Annotated[str, typer.Option("--space", "-s", help="Space of the input: clip, clap or ulip.")],
    modality: Annotated[
        str | None,
        typer.Option(
            "--modality",
            "-m",
            help="What the input embeds (audio, image, text, pointcloud); default: the "
            "side's memory modality (audio for clap, image for clip in the audio-visual bridge).",
        ),
    ] = None,
) -> None:
    """Project native embeddings (e.g. CLAP audio) into the bridge's shared space."""
    from avsearch.bridge.apply import project_file

    shape = project_file(bridge, space, src, dst, modality)
    err.print(f"[green]wrote[/] {dst} {shape[0]} x {shape[1]}")
