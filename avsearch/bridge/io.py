"""The bridge file: one .safetensors file holding the head weights and, in its header, JSON metadata.

Loading reads tensors with safetensors and metadata with json: nothing is unpickled. The released C-MCR
checkpoints (torch .pt files) are read with `torch.load(weights_only=True)`, which refuses arbitrary
objects, and converted into the same format.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from avsearch import __version__
from avsearch.bridge.heads import HeadSpec
from avsearch.bridge.meta import (  # torch-free, re-exported here
    META_KEY,
    _first_line,
    calibration_sidecar,
    read_header_meta,
)
from avsearch.bridge.meta import sidecar_calibrations as _sidecar_calibrations
from avsearch.bridge.model import Bridge, BridgeMeta, Side
from avsearch.checkpoints import is_refusal, loading, refusal
from avsearch.errors import InputError
from avsearch.timings import timed

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def weights_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of the tensors, in name order (first 16 hex digits)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def save_bridge(bridge: Bridge, path: str | Path) -> str:
    """Write `bridge` to `path` atomically and return its fingerprint."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in bridge.state_dict().items()}
    fingerprint = weights_fingerprint(state)
    bridge.fingerprint = fingerprint
    meta = bridge.meta.to_dict()
    meta["package_version"] = meta.get("package_version") or __version__
    header = {
        META_KEY: json.dumps(meta, sort_keys=True),
        "format_version": str(FORMAT_VERSION),
        "fingerprint": fingerprint,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=header)
    os.replace(tmp, path)  # a crash mid-write never leaves a half-written bridge under the real name
    return fingerprint


@timed("load bridge")
def open_bridge(path: str | Path, device: str | torch.device | None = None) -> Bridge:
    """A bridge from either format: a .safetensors bridge file, or a released C-MCR .pt checkpoint (with
    the score calibrations of its sidecar file, when one was made for these weights)."""
    path = Path(path)
    if path.suffix == ".pt":
        bridge = import_released(path)
        bridge.meta = replace(bridge.meta, calibrations=_sidecar_calibrations(path, bridge.fingerprint))
        return bridge.to(device) if device is not None else bridge
    return load_bridge(path, device)


def save_calibrations(path: str | Path, bridge: Bridge) -> Path:
    """Store `bridge.meta.calibrations` with the bridge at `path` (rewritten atomically: same weights, same
    fingerprint, so indexes made with it stay valid; a .pt bridge gets a sidecar JSON). Returns the file
    written."""
    path = Path(path)
    if path.suffix != ".pt":
        save_bridge(bridge, path)
        return path
    sidecar = calibration_sidecar(path)
    data = {"fingerprint": bridge.fingerprint, "calibrations": bridge.meta.calibrations}
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, sidecar)
    return sidecar


def load_bridge(path: str | Path, device: str | torch.device | None = None) -> Bridge:
    """Load a bridge file written by `save_bridge`; the weights must match the metadata exactly."""
    path = Path(path)
    meta, stored_fp = read_header_meta(path)
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    bridge = Bridge(meta)
    _strict_load(bridge, state, f"{path}: weights do not match the bridge metadata")
    fingerprint = weights_fingerprint(state)
    if stored_fp and stored_fp != fingerprint:
        raise InputError(f"{path}: fingerprint mismatch (file says {stored_fp}, weights give {fingerprint})")
    bridge.fingerprint = fingerprint
    bridge.eval()
    if device is not None:
        bridge.to(device)
    return bridge


def _strict_load(module: torch.nn.Module, state: dict[str, torch.Tensor], context: str) -> None:
    """load_state_dict(strict=True), but the error names the missing, unexpected or mis-shaped keys."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    problems = [
        f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
        if items
    ]
    if problems:
        raise InputError(f"{context} ({'; '.join(problems)})")
    module.load_state_dict(state, strict=True)


# --- the released C-MCR checkpoints -------------------------------------------------------------

_CLIP = Side(space="clip", encoder="clip-vit-b-32-openai", dim=512, memory="image")
_RELEASED: dict[str, dict[str, Any]] = {
    # clap_clip.pt: Head_A = CLAP (audio) side, Head_B = CLIP side; two-layer head, no final ReLU.
    "clap_clip": {
        "name": "audio_visual",
        "overlap": "text",
        "prefixes": {"Head_B.": _CLIP, "Head_A.": Side("clap", "clap-630k-fusion", 512, "audio")},
        "head": HeadSpec(kind="released_av", in_dim=512, hidden=1024, out_dim=512, norm_stats="shared"),
    },
    # ulip_clip.pt: Head_A = CLIP side, Head_B = ULIP side; one Linear-BN-ReLU per side.
    "ulip_clip": {
        "name": "pointcloud_text",
        "overlap": "image",
        "prefixes": {
            "Head_A.": Side("clip", "clip-vit-b-32-openai", 512, "text"),
            "Head_B.": Side("ulip", "ulip2-pointbert", 512, "pointcloud"),
        },
        "head": HeadSpec(kind="released_3d", in_dim=512, hidden=512, out_dim=512, norm_stats="shared"),
    },
}
RELEASED_KINDS = tuple(_RELEASED)


def import_released(path: str | Path, kind: str | None = None) -> Bridge:
    """Convert a released C-MCR checkpoint (clap_clip.pt or ulip_clip.pt) into a Bridge.

    `kind` is "clap_clip" or "ulip_clip"; when None it is taken from the file name, else from the keys
    (two-layer heads: clap_clip; one-layer: ulip_clip). The checkpoint is read with weights_only=True
    and must hold exactly the released keys (strict load).
    """
    path = Path(path)
    if kind is None and path.stem in _RELEASED:
        kind = path.stem
    if kind is not None and kind not in _RELEASED:
        raise InputError(f"{path}: unknown released checkpoint kind {kind!r}; valid kinds: {', '.join(RELEASED_KINDS)}")
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        with loading():
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, forbidden globals
        if is_refusal(exc):
            raise refusal(path, exc) from None
        raise InputError(f"{path}: cannot be read as a weights-only torch checkpoint ({_first_line(exc)})") from exc
    if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a state dict, found {type(raw).__name__}")
    if kind is None:
        keys = [str(k).removeprefix("module.") for k in raw]
        kind = "clap_clip" if any(k.startswith("Head_A.net1.") for k in keys) else "ulip_clip"
    spec = _RELEASED[kind]
    sides = tuple(spec["prefixes"].values())
    meta = BridgeMeta(
        name=spec["name"],
        overlap=spec["overlap"],
        sides=sides,  # type: ignore[arg-type]
        head=spec["head"],
        source=f"imported:{path.name}",
        package_version=__version__,
    )
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        key = key.removeprefix("module.")
        for prefix, side in spec["prefixes"].items():
            if key.startswith(prefix):
                state[f"heads.{side.space}.{key[len(prefix) :]}"] = value
                break
        else:
            raise InputError(f"{path}: unexpected key {key!r} for a {kind} checkpoint")
    bridge = Bridge(meta)
    _strict_load(bridge, state, f"{path}: does not match the {kind} layout")
    bridge.fingerprint = weights_fingerprint(bridge.state_dict())
    return bridge.eval()
