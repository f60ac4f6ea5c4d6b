"""`avsearch eval ...`: evaluation commands (retrieval here; localize, counterfactual and classify3d from
their own modules)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from avsearch.cli.common import DeviceOption, WeightsDirOption, out, user_errors
from avsearch.errors import InputError


def register(app: typer.Typer) -> None:
    from avsearch.cli import eval_classify3d, eval_localize

    eval_app = typer.Typer(help="Evaluate embeddings and bridges.", no_args_is_help=True)  # one per app
    eval_localize.register_eval(eval_app)  # first, as `avsearch eval --help` has always listed them
    eval_app.command("retrieval")(retrieval_command)
    eval_classify3d.register_eval(eval_app)
    app.add_typer(eval_app, name="eval")


@user_errors
def retrieval_command(
    queries: Annotated[
        Path | None, typer.Option("--queries", "-q", help=".npy (N, d): item i matches gallery i.")
    ] = None,
    gallery: Annotated[Path | None, typer.Option("--gallery", "-g", help=".npy (N, d), same row order.")] = None,
    bridge: Annotated[
        Path | None,
        typer.Option("--bridge", "-b", help="Project both through this bridge first (with --pairs: C-MCR's bridge)."),
    ] = None,
    query_space: Annotated[str | None, typer.Option(help="Native space of --queries (with --bridge).")] = None,
    gallery_space: Annotated[str | None, typer.Option(help="Native space of --gallery (with --bridge).")] = None,
    query_modality: Annotated[
        str | None, typer.Option(help="Modality of --queries (with --bridge; default: the side's memory).")
    ] = None,
    gallery_modality: Annotated[
        str | None, typer.Option(help="Modality of --gallery (with --bridge; default: the side's memory).")
    ] = None,
    pairs: Annotated[
        Path | None,
        typer.Option(
            "--pairs",
            help="Instead of vectors: a CSV of audio,image file pairs (paths relative to it), embedded by --backend.",
        ),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="With --pairs: cmcr, cavmae or both (one table, a row group each).")
    ] = "both",
    weights_dir: WeightsDirOption = None,
    device: DeviceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Instance-level retrieval in both directions: mAP, R@1, R@5, R@10 (percent), with chance.

    Either paired vector files (--queries/--gallery), or audio-image file pairs (--pairs) embedded by each
    backend asked for and scored by the same metric code: audio -> image and image -> audio.
    """
    if pairs is not None:
        if queries is not None or gallery is not None:
            raise InputError("give --pairs FILE, or --queries and --gallery (not both)")
        report = _pairs_report(pairs, backend, bridge, weights_dir, device)
        title = f"audio-image retrieval, N = {report['n']} pairs ({pairs.name})"
        rows = [
            (f"{name}: {label}", r[key])
            for name, r in report["backends"].items()
            for label, key in (("audio -> image", "q2g"), ("image -> audio", "g2q"))
        ]
    else:
        if queries is None or gallery is None:
            raise InputError("give --queries and --gallery (paired .npy files), or --pairs FILE")
        from avsearch.evaluation.runner import evaluate_retrieval_files

        report = evaluate_retrieval_files(
            queries, gallery, bridge, query_space, gallery_space, query_modality, gallery_modality
        )
        title = f"instance-level retrieval, N = {report['n']}"
        rows = [("queries -> gallery", report["q2g"]), ("gallery -> queries", report["g2q"])]
    if as_json:
        out.print_json(json.dumps(report))
        return
    table = Table(title=title)
    for col in ("direction", "mAP", "R@1", "R@5", "R@10"):
        table.add_column(col, justify="right" if col != "direction" else "left")
    for label, row in [*rows, ("chance", report["chance"])]:
        table.add_row(label, *(f"{row[k]:.2f}" for k in ("mAP", "R1", "R5", "R10")))
    out.print(table)


def _pairs_report(
    pairs: Path, backend: str, bridge: Path | None, weights_dir: Path | None, device: str | None
) -> dict[str, Any]:
    """Each backend's scores on the same pairs: {"n", "backends": {name: {"q2g", "g2q"}}, "chance"}."""
    from avsearch.embedding.models import parse_backends
    from avsearch.evaluation.retrieval import chance_scores, pair_vectors, read_pairs, retrieval_metrics
    from avsearch.settings import load_settings

    settings = load_settings()
    listed = read_pairs(pairs)
    report: dict[str, Any] = {"n": len(listed), "pairs": str(pairs), "backends": {}}
    for name in parse_backends(backend):
        a, i = pair_vectors(listed, name, weights_dir or settings.weights_dir, device or settings.device, bridge)
        scores = retrieval_metrics(a, i)
        report["backends"][name] = {"q2g": scores["q2g"].to_dict(), "g2q": scores["g2q"].to_dict()}
    report["chance"] = chance_scores(len(listed)).to_dict()
    return report
