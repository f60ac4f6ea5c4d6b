"""Options shared by `avsearch localize` / `match` (cli/localize.py) and `avsearch eval localize` /
`eval counterfactual` (cli/eval_localize.py): both import them from here, neither from the other."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

AudioOption = Annotated[Path, typer.Option("--audio", "-a", help="The sound (any audio file avsearch reads).")]
ImageOption = Annotated[Path, typer.Option("--image", "-i", help="The picture.")]
BridgeOption = Annotated[
    Path | None, typer.Option("--bridge", help="Audio-image bridge (default: the released clap_clip.pt).")
]
ProposalsOption = Annotated[
    str | None,
    typer.Option(
        "--proposals",
        help="auto (a COCO detector when its weights are present, else search), search (selective search + "
        "grid) or detector (default: configs/localize.toml).",
    ),
]
BoxesOption = Annotated[
    Path | None,
    typer.Option("--boxes", help="JSON boxes from any detector: [[x0, y0, x1, y1, label?], ...] or {picture: [...]}"),
]
