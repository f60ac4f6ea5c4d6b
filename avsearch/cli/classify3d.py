"""`avsearch classify3d`: zero-shot classification of 3D shapes (point clouds, meshes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from avsearch.cli.common import DeviceOption, WeightsDirOption, out, user_errors

# Shared with `avsearch eval classify3d`.
Bridge3DOption = Annotated[
    Path | None, typer.Option("--bridge", help="ULIP-CLIP bridge (.safetensors or released ulip_clip.pt).")
]
PromptsOption = Annotated[
    Path | None, typer.Option("--prompts", help="Prompt templates TOML (default: configs/prompts_3d.toml).")
]


def register(app: typer.Typer) -> None:
    app.command("classify3d")(classify3d_command)


@user_errors
def classify3d_command(
    files: Annotated[
        list[Path],
        typer.Argument(help="Point-cloud or mesh files (.ply .pcd .npy .npz .xyz .txt .off .obj .stl)."),
    ],
    labels: Annotated[
        str, typer.Option("--labels", help="Candidate labels: 'modelnet40' or a file with one label a line.")
    ] = "modelnet40",
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="How many labels to show per file.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    bridge: Bridge3DOption = None,
    weights_dir: WeightsDirOption = None,
    device: DeviceOption = None,
    prompts: PromptsOption = None,
) -> None:
    """Rank labels for each 3D shape through ULIP-2 PointBERT, CLIP text prompts and a C-MCR bridge."""
    from avsearch.search.classify3d import classify3d

    results = classify3d(files, labels, k, bridge, weights_dir, device, prompts)
    if as_json:
        rows = [
            {"file": r.path, "top": [{"label": p.label, "score": round(p.score, 6)} for p in r.top]} for r in results
        ]
        out.print_json(json.dumps(rows))
        return
    for r in results:
        table = Table(title=r.path, title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("label")
        table.add_column("score", justify="right")
        for rank, p in enumerate(r.top, 1):
            table.add_row(str(rank), p.label, f"{p.score:.4f}")
        out.print(table)
