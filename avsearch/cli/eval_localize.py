"""`avsearch eval localize` and `avsearch eval counterfactual`: the paper's tables 2 and 3.

Registered on the `avsearch eval` group by avsearch/cli/evaluate.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from avsearch.cli.common import DeviceOption, WeightsDirOption, out, user_errors
from avsearch.cli.live_progress import progress_bars
from avsearch.cli.localize_options import BoxesOption, BridgeOption, ProposalsOption

DataOption = Annotated[
    Path,
    typer.Option(
        "--data",
        help="Folder with annotations.json ([{image, audio, boxes}], paths relative to it) or VGGSS's vggss.json "
        "(frames/<file>.jpg, audio/<file>.wav).",
    ),
]
SamplesOption = Annotated[bool, typer.Option("--per-sample", help="With --json: every pair's cIoU and confidence.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def register_eval(eval_app: typer.Typer) -> None:
    eval_app.command("localize")(eval_localize_command)
    eval_app.command("counterfactual")(eval_counterfactual_command)


def _run(kind: str, data: Path, boxes: Path | None, proposals, bridge, weights_dir, device):  # noqa: ANN001, ANN202
    from avsearch.localize.evaluate import evaluate_counterfactual, evaluate_localization, read_samples
    from avsearch.localize.pipeline import get_localizer

    loc = get_localizer(bridge, weights_dir, device, proposals)
    total = len(read_samples(data))
    run = evaluate_localization if kind == "localize" else evaluate_counterfactual
    with progress_bars(transient=True) as bar:
        task = bar.add_task(f"eval {kind}", total=total)
        return run(data, loc, boxes, lambda n: bar.advance(task, n))


@user_errors
def eval_localize_command(
    data: DataOption,
    as_json: JsonOption = False,
    per_sample: SamplesOption = False,
    boxes: BoxesOption = None,
    proposals: ProposalsOption = None,
    bridge: BridgeOption = None,
    weights_dir: WeightsDirOption = None,
    device: DeviceOption = None,
) -> None:
    """Zero-shot sound-source localisation (paper table 2): cIoU (percent of pairs whose best proposal has
    cIoU >= 0.5 with the ground truth, on a 224 x 224 raster), AUC over cIoU thresholds 0..1, mean cIoU."""
    report = _run("localize", data, boxes, proposals, bridge, weights_dir, device)
    if as_json:
        out.print_json(json.dumps(report.to_dict(per_sample)))
        return
    table = Table(title=f"sound-source localisation, {report.n} pairs")
    for col in ("cIoU@0.5", "AUC", "mean cIoU"):
        table.add_column(col, justify="right")
    table.add_row(*(f"{report.values[k]:.2f}" for k in ("ciou", "auc", "mean_ciou")))
    out.print(table)


@user_errors
def eval_counterfactual_command(
    data: DataOption,
    as_json: JsonOption = False,
    per_sample: SamplesOption = False,
    boxes: BoxesOption = None,
    proposals: ProposalsOption = None,
    bridge: BridgeOption = None,
    weights_dir: WeightsDirOption = None,
    device: DeviceOption = None,
) -> None:
    """Counterfactual audio-image recognition (paper table 3, B.3): AP and Max-F1 over pairs that belong (with
    boxes) and pairs that do not (boxes: []); a true positive needs confidence >= delta and cIoU >= 0.5. Also
    prints the confidence threshold at Max-F1: a calibrated value for `avsearch match --threshold`."""
    report = _run("counterfactual", data, boxes, proposals, bridge, weights_dir, device)
    if as_json:
        out.print_json(json.dumps(report.to_dict(per_sample)))
        return
    v = report.values
    table = Table(title=f"counterfactual recognition, {int(v['positives'])} pairs + {int(v['negatives'])} negatives")
    for col in ("AP", "Max-F1", "threshold at Max-F1"):
        table.add_column(col, justify="right")
    table.add_row(f"{v['ap']:.2f}", f"{v['max_f1']:.2f}", f"{v['threshold_at_max_f1']:.4f}")
    out.print(table)
