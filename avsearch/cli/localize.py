"""`avsearch localize` and `avsearch match`: where the sound is in a picture, and whether it belongs there.

`avsearch eval localize` / `eval counterfactual` live in cli/eval_localize.py (registered by cli/evaluate.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from avsearch.cli.common import DeviceOption, WeightsDirOption, err, out, user_errors
from avsearch.cli.localize_options import AudioOption, BoxesOption, BridgeOption, ImageOption, ProposalsOption


def register(app: typer.Typer) -> None:
    app.command("localize")(localize_command)
    app.command("match")(match_command)


@user_errors
def localize_command(
    audio: AudioOption,
    image: ImageOption,
    out_png: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the picture with the heat map and best box (PNG).")
    ] = None,
    heat: Annotated[str | None, typer.Option("--heat", help="Heat map: max or sum (default: the config's).")] = None,
    top: Annotated[int, typer.Option("-k", "--top", min=1, help="How many proposals to list.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (every proposal) instead of a table.")] = False,
    boxes: BoxesOption = None,
    proposals: ProposalsOption = None,
    bridge: BridgeOption = None,
    weights_dir: WeightsDirOption = None,
    device: DeviceOption = None,
) -> None:
    """Where in the picture the sound comes from: proposals ranked by their cosine with the sound in the
    bridge's shared space (C-MCR zero-shot localisation), the best box, and a heat-map picture."""
    from avsearch.localize.pipeline import get_localizer, load_boxes

    loc = get_localizer(bridge, weights_dir, device, proposals)
    found = loc.localize(audio, image, load_boxes(boxes, image))
    if out_png is not None:
        settings = loc.config.heatmap
        found.save_overlay(out_png, heat or settings.mode, settings.alpha, settings.max_pixels)
    if as_json:
        payload = found.to_dict()
        payload["overlay"] = str(out_png) if out_png is not None else None
        out.print_json(json.dumps(payload))
        return
    table = Table(title=escape(f"{image} <- {audio} ({found.proposal_source}, {len(found.proposals)} proposals)"))
    for col in ("#", "box [x0, y0, x1, y1]", "score", "source"):
        table.add_column(col, justify="right" if col in ("#", "score") else "left")
    for p in found.proposals[:top]:
        source = p.box.source + (f" {p.box.label}" if p.box.label else "")
        table.add_row(str(p.rank), escape(str(p.box.to_list())), f"{p.score:.4f}", escape(source))
    out.print(table)
    out.print(
        f"best box {found.best.box.to_list()} score {found.best.score:.4f}; whole image {found.whole_image_score:.4f}",
        markup=False,
    )
    if out_png is not None:
        err.print(f"heat map written to {out_png}", markup=False)


@user_errors
def match_command(
    audio: AudioOption,
    image: ImageOption,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold", help="Confidence needed to say the sound belongs (default: the bridge's, else config)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    boxes: BoxesOption = None,
    proposals: ProposalsOption = None,
    bridge: BridgeOption = None,
    weights_dir: WeightsDirOption = None,
    device: DeviceOption = None,
) -> None:
    """Does the sound belong in the picture: the best proposal's score (match confidence) and the whole-image
    score, against a threshold (given, a calibration recorded in the bridge, or the config's default)."""
    from avsearch.localize.pipeline import get_localizer, load_boxes

    loc = get_localizer(bridge, weights_dir, device, proposals)
    result = loc.match(audio, image, threshold, load_boxes(boxes, image))
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    verdict = "belongs" if result.matches else "does not belong"
    out.print(f"{audio} {verdict} in {image}", markup=False)
    out.print(f"confidence {result.confidence:.4f} (best box {result.localization.best.box.to_list()})", markup=False)
    out.print(f"whole image {result.localization.whole_image_score:.4f}", markup=False)
    out.print(f"threshold {result.threshold:.4f}: {result.threshold_source}", markup=False)
    if result.probability is not None:
        out.print(f"probability {result.probability:.2f} that the sound belongs (bridge calibration)", markup=False)
