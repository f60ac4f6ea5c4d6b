"""`avsearch embed`: media folders and caption files -> the {modality}.{space}.npy training memories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from avsearch.cli.common import DeviceOption, QuietOption, WeightsDirOption, err, out, user_errors
from avsearch.media.walk import printable


@user_errors
def embed_command(
    sources: Annotated[
        list[Path] | None,
        typer.Argument(help="Media files or folders (audio, images, point clouds; kind told by content)."),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the .npy memories (created).")] = Path(
        "embeddings"
    ),
    captions: Annotated[
        list[Path] | None,
        typer.Option("--captions", help="Caption file, one caption a line (repeatable)."),
    ] = None,
    weights_dir: WeightsDirOption = None,
    device: DeviceOption = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", help="Embed what this bridge config trains on (audio_visual, pointcloud_text, a TOML)."
        ),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Embed media and captions into {modality}.{space}.npy files for `avsearch train`.

    Images -> image.clip.npy; audio -> audio.clap.npy; point clouds -> pointcloud.ulip.npy; captions ->
    text.clip.npy and text.clap.npy (same row order). Resumable: run it again after an interruption.
    Files that cannot be decoded are skipped and listed with the reason.
    """
    from avsearch.bridge.config import load_train_config
    from avsearch.embedding.pipeline import embed_sources

    report = embed_sources(
        sources or [],
        out_dir,
        captions=captions or [],
        weights_dir=weights_dir,
        device=device,
        progress=not quiet,
        routes=load_train_config(config).embed_routes() if config else None,
    )
    table = Table(title=f"embeddings in {report.out_dir}")
    for column in ("file", "rows", "dim", "encoder", ""):
        table.add_column(column)
    for o in report.outputs:
        table.add_row(f"{o.name}.npy", str(o.rows), str(o.dim), o.encoder, "kept (up to date)" if o.reused else "")
    out.print(table)
    if report.skipped:
        listed = report.out_dir / "skipped.jsonl"
        err.print(f"[yellow]skipped {len(report.skipped)} file(s)[/] (listed in {listed}):")
        for source, reason in report.skipped[:50]:
            err.print(f"  {printable(source)}: {reason}", markup=False, highlight=False, soft_wrap=True)
        if len(report.skipped) > 50:
            err.print(f"  ... and {len(report.skipped) - 50} more")
    # A file named on the command line (not found in a folder) that could not be embedded is an error.
    named = {str(Path(s).expanduser().absolute()) for s in sources or [] if Path(s).expanduser().is_file()}
    refused = [(s, why) for s, why in report.skipped if s in named]
    for source, why in refused:
        typer.echo(f"avsearch: error: {printable(source)}: {why}", err=True)
    if refused:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("embed")(embed_command)
