"""`avsearch eval classify3d`: zero-shot 3D classification accuracy over a labelled folder.

The `avsearch eval` group lives in avsearch/cli/evaluate.py, which calls `register_eval`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from avsearch.cli.classify3d import Bridge3DOption, PromptsOption
from avsearch.cli.common import DeviceOption, WeightsDirOption, err, out, user_errors
from avsearch.cli.live_progress import progress_bars


def register_eval(eval_app: typer.Typer) -> None:
    eval_app.command("classify3d")(eval_classify3d_command)


@user_errors
def eval_classify3d_command(
    data: Annotated[Path, typer.Option("--data", help="Folder with one sub-folder per class (ModelNet40 layout).")],
    labels: Annotated[
        str | None,
        typer.Option("--labels", help="Candidate labels ('modelnet40' or a file); default: the class folders."),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Use only files under a folder of this name (e.g. test).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    per_class: Annotated[bool, typer.Option("--per-class", help="Also print top-1 per class.")] = False,
    bridge: Bridge3DOption = None,
    weights_dir: WeightsDirOption = None,
    device: DeviceOption = None,
    prompts: PromptsOption = None,
) -> None:
    """Top-1/3/5 zero-shot accuracy of ULIP-2 + CLIP prompts + a C-MCR bridge on a labelled 3D folder."""
    from avsearch.evaluation.classify3d_eval import evaluate_classify3d, find_labelled_files

    total = len(find_labelled_files(data, split))
    with progress_bars(transient=True) as bar:
        task = bar.add_task("classifying", total=total)
        report = evaluate_classify3d(
            data, labels, split, bridge, weights_dir, device, lambda n: bar.advance(task, n), prompts
        )
    if as_json:
        payload = {
            "files": report.n_files,
            "labels": len(report.labels),
            **{f"top{k}": round(v * 100, 2) for k, v in report.topk.items()},
            "per_class": {c: {"top1_hits": h, "files": n} for c, (h, n) in report.per_class.items()},
            "skipped": report.skipped,
        }
        out.print_json(json.dumps(payload))
        return
    table = Table(title=f"zero-shot 3D classification: {report.n_files} files, {len(report.labels)} labels")
    for k in report.topk:
        table.add_column(f"top-{k} %", justify="right")
    table.add_row(*(f"{v * 100:.2f}" for v in report.topk.values()))
    out.print(table)
    if per_class:
        pc = Table("class", "top-1 %", "files")
        for c, (h, n) in report.per_class.items():
            pc.add_row(c, f"{100 * h / n:.1f}", str(n))
        out.print(pc)
    if report.skipped:
        err.print(f"skipped {len(report.skipped)} unreadable file(s); see --verbose for each")
