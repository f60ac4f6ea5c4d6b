"""`avsearch train`: fit a C-MCR bridge from pre-extracted embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from avsearch.cli.common import DeviceOption, QuietOption, err, out, user_errors


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)


@user_errors
def train_command(
    embeddings: Annotated[
        Path, typer.Option("--embeddings", "-e", help="Folder of {modality}.{space}.npy arrays (see README).")
    ],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Bridge file to write (.safetensors).")],
    config: Annotated[
        str, typer.Option("--config", "-c", help="TOML config path or preset: audio_visual, pointcloud_text.")
    ] = "audio_visual",
    epochs: Annotated[int | None, typer.Option(help="Override optim.epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override optim.batch_size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override optim.lr (peak of the cosine schedule).")] = None,
    seed: Annotated[int | None, typer.Option(help="Override optim.seed.")] = None,
    consistency: Annotated[
        str | None,
        typer.Option(help="Semantic consistency: softmax (eq. 2), argmax (row I), random (row J)."),
    ] = None,
    consistency_backend: Annotated[
        str | None,
        typer.Option(
            help="auto (exact on CUDA; approx on a CPU from consistency.approx_above memory rows), exact "
            "(all memory rows) or approx (IVF lists, probe budget tuned to a mean cosine to exact of 0.999)."
        ),
    ] = None,
    no_renorm: Annotated[bool, typer.Option("--no-renorm", help="Ablation: no re-normalisation (row G).")] = False,
    no_noise: Annotated[bool, typer.Option("--no-noise", help="Ablation: no completion noise.")] = False,
    no_ttc: Annotated[bool, typer.Option("--no-ttc", help="Ablation: drop L_ttc, the overlap-pair loss.")] = False,
    no_avc: Annotated[bool, typer.Option("--no-avc", help="Ablation: drop L_avc, the pseudo-pair loss.")] = False,
    no_intra: Annotated[
        list[str] | None,
        typer.Option("--no-intra", help="Ablation: drop a side's intra-MCR term (repeatable)."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Training state saved after every epoch (default: the --out path + '.ckpt')."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the checkpoint (same config and arrays required).")
    ] = False,
    device: DeviceOption = None,
    quiet: QuietOption = False,
) -> None:
    """Train a C-MCR bridge (two projectors) from unpaired embeddings; flags override the config."""
    from avsearch.bridge.config import load_train_config, with_overrides
    from avsearch.bridge.train import train_from_folder
    from avsearch.errors import ConfigError

    cfg = load_train_config(config)
    intra = None
    if no_intra:
        unknown = sorted(set(no_intra) - {s.space for s in cfg.sides})
        if unknown:
            raise ConfigError(f"--no-intra {', '.join(unknown)}: this bridge's sides are {cfg.intra_sides}")
        intra = tuple(s for s in cfg.intra_sides if s not in no_intra) or ("none",)
    cfg = with_overrides(
        cfg,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        mode=consistency,
        backend=consistency_backend,
        renorm=False if no_renorm else None,
        noise=False if no_noise else None,
        ttc=False if no_ttc else None,
        avc=False if no_avc else None,
        intra=intra,
    )
    ckpt = checkpoint or out_path.with_name(out_path.name + ".ckpt")
    result, fingerprint = train_from_folder(
        cfg, embeddings, out_path, device=device, progress=not quiet, checkpoint=ckpt, resume=resume
    )
    metrics = result.bridge.meta.metrics
    table = Table(title=f"bridge {cfg.name} -> {out_path}", show_header=False)
    table.add_row("fingerprint", fingerprint)
    table.add_row("overlap pairs", str(metrics["pairs"]))
    table.add_row("memory rows", " / ".join(map(str, metrics["memory_rows"])))
    table.add_row("epochs / steps", f"{cfg.optim.epochs} / {metrics['steps']}")
    for key, value in metrics["final"].items():
        table.add_row(f"final {key}", f"{value:.4f}")
    if metrics["heldout"]:
        held = metrics["heldout"]
        table.add_row(
            f"held-out ({metrics['heldout_pairs']} pairs)",
            " / ".join(f"{k} {held[k]:.4f}" for k in ("loss", "ttc", "avc", "intra")),
        )
    table.add_row("checkpoint", str(ckpt))
    table.add_row("throughput", f"{metrics['samples_per_s']:.0f} pairs/s on {metrics['device']}")
    table.add_row("consistency", f"{metrics['consistency_seconds']:.1f} s")
    out.print(table)
    for side, report in zip(cfg.sides, result.consistency, strict=True):
        err.print(
            f"{report.line()} ({side.memory} memory, {report.seconds:.1f} s)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    err.print(f"[green]wrote[/] {out_path}")
