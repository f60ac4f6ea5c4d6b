"""`avsearch eval ...`: evaluation commands (retrieval here; classify3d from its own module)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from avsearch.cli.common import out, user_errors

eval_app = typer.Typer(help="Evaluate embeddings and bridges.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    from avsearch.cli.eval_classify3d import register_eval

    eval_app.command("retrieval")(retrieval_command)
    register_eval(eval_app)
    app.add_typer(eval_app, name="eval")


@user_errors
def retrieval_command(
    queries: Annotated[Path, typer.Option("--queries", "-q", help=".npy (N, d): item i matches gallery i.")],
    gallery: Annotated[Path, typer.Option("--gallery", "-g", help=".npy (N, d), same row order.")],
    bridge: Annotated[
        Path | None, typer.Option("--bridge", "-b", help="Project both through this bridge first.")
    ] = None,
    query_space: Annotated[str | None, typer.Option(help="Native space of --queries (with --bridge).")] = None,
    gallery_space: Annotated[str | None, typer.Option(help="Native space of --gallery (with --bridge).")] = None,
    query_modality: Annotated[
        str | None, typer.Option(help="Modality of --queries (with --bridge; default: the side's memory).")
    ] = None,
    gallery_modality: Annotated[
        str | None, typer.Option(help="Modality of --gallery (with --bridge; default: the side's memory).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Instance-level retrieval in both directions: mAP, R@1, R@5, R@10 (percent), with chance."""
    from avsearch.evaluation.runner import evaluate_retrieval_files

    report = evaluate_retrieval_files(
        queries, gallery, bridge, query_space, gallery_space, query_modality, gallery_modality
    )
    if as_json:
        out.print_json(json.dumps(report))
        return
    table = Table(title=f"instance-level retrieval, N = {report['n']}")
    for col in ("direction", "mAP", "R@1", "R@5", "R@10"):
        table.add_column(col, justify="right" if col != "direction" else "left")
    for label, row in (
        ("queries -> gallery", report["q2g"]),
        ("gallery -> queries", report["g2q"]),
        ("chance", report["chance"]),
    ):
        table.add_row(label, *(f"{row[k]:.2f}" for k in ("mAP", "R1", "R5", "R10")))
    out.print(table)
