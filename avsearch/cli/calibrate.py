"""`avsearch calibrate`: make a bridge's scores readable from real pairs (audio-image, 3D-image)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from avsearch.cli.common import DeviceOption, WeightsDirOption, err, out, user_errors
from avsearch.media.walk import printable

if TYPE_CHECKING:  # the command's imports stay light: `avsearch --help` loads every command module
    from avsearch.bridge.calibrate import Encode


@user_errors
def calibrate_command(
    bridge: Annotated[Path, typer.Option("--bridge", "-b", help="Bridge file (.safetensors or a released .pt).")],
    pairs: Annotated[
        Path | None,
        typer.Option("--pairs", help="CSV of real pairs: a header naming two modalities (audio,image), then files."),
    ] = None,
    embeddings: Annotated[
        Path | None,
        typer.Option("--embeddings", help="Folder of row-aligned {modality}.{space}.npy arrays of real pairs."),
    ] = None,
    weights_dir: WeightsDirOption = None,
    device: DeviceOption = None,
) -> None:
    """Fit the score calibration of a bridge on real pairs that belong together (a few hundred is enough)
    and store it in the bridge file (a .pt bridge gets a .calibration.json beside it). Replaces the
    calibration from pseudo pairs that `avsearch train` made; indexes made with the bridge stay valid."""
    from avsearch.bridge import calibrate as cal
    from avsearch.bridge.io import open_bridge, save_calibrations
    from avsearch.errors import InputError

    if (pairs is None) == (embeddings is None):
        raise InputError("give the real pairs as --pairs CSV or as --embeddings FOLDER (one of them)")
    model = open_bridge(bridge)
    skipped: list[tuple[str, str]] = []
    if embeddings is not None:
        modalities, native = cal.read_embedding_pairs(embeddings, model.meta)
    else:
        modalities, files = cal.read_csv_pairs(pairs)  # type: ignore[arg-type]
        native, skipped = cal.encode_pairs(modalities, files, _encoder(weights_dir, device), model.meta)
    for path, reason in skipped:
        err.print(f"avsearch: skipped {printable(path)}: {reason}", markup=False, highlight=False, soft_wrap=True)
    calibration = cal.calibrate_embeddings(model, modalities, native)
    written = save_calibrations(bridge, cal.with_calibration(model, modalities, calibration))
    out.print(f"{' - '.join(modalities)} scores {calibration.describe()}", markup=False, highlight=False)
    err.print(f"[green]wrote[/] {written}", highlight=False)


def _encoder(weights_dir: Path | None, device: str | None) -> Encode:
    """encode(encoder name, modality, files) -> (positions encoded, vectors, skipped), each model loaded once."""
    from avsearch.embedding.models import default_loader
    from avsearch.embedding.stream import encode_batches
    from avsearch.settings import load_settings

    load = default_loader(weights_dir or load_settings().weights_dir, device)
    loaded: dict[tuple[str, str], object] = {}

    def encode(name: str, modality: str, files: list[str]) -> tuple[list[int], Any, list[tuple[str, str]]]:
        if (name, modality) not in loaded:
            loaded[(name, modality)] = load(name, (modality,))
        [(ok, vectors, bad)] = list(encode_batches(loaded[(name, modality)], modality, [files]))  # type: ignore[arg-type]
        return ok, vectors, [(str(p), str(r)) for p, r in bad]

    return encode


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
