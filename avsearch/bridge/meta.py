"""What a bridge connects (its metadata), readable without torch: `avsearch info`, `query --id` and the
numpy projection (bridge/fast.py) need no torch. Re-exported by bridge/model.py and bridge/heads.py."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from avsearch.bridge.confidence import Calibration, pair_key
from avsearch.errors import IncompatibleError, InputError

log = logging.getLogger(__name__)

META_KEY = "avsearch.bridge"  # header key holding the JSON metadata


@dataclass(frozen=True)
class HeadSpec:
    kind: str = "mlp"
    in_dim: int = 512
    hidden: int = 1024  # width of the middle layer (two-layer heads only)
    out_dim: int = 512
    norm_stats: str = "per_kind"  # BatchNorm running statistics: per input kind, or shared (upstream's)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Side:
    """One of the two connected spaces."""

    space: str  # "clip", "clap", "ulip"
    encoder: str  # encoder registry name whose embeddings this side expects
    dim: int  # native embedding width
    memory: str  # the non-overlap modality of this space ("image" for clip in the AV bridge)


@dataclass
class BridgeMeta:
    """Everything about a bridge except its weights; stored as JSON beside the safetensors."""

    name: str
    overlap: str  # modality both spaces share ("text" for clip+clap, "image" for clip+ulip)
    sides: tuple[Side, Side]
    head: HeadSpec
    hyper: dict[str, Any] = field(default_factory=dict)  # training hyper-parameters (empty if imported)
    data_fingerprint: str | None = None  # sha256 over the training arrays
    metrics: dict[str, Any] = field(default_factory=dict)  # final losses, training time
    source: str = "trained"  # "trained" or "imported:<file name>"
    package_version: str = ""
    # Score calibrations by modality pair ("audio|image": bridge/confidence.py Calibration.to_dict()).
    calibrations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def calibration(self, a: str, b: str) -> Calibration | None:
        """The score calibration of modality pair (a, b), or None when the bridge holds none."""
        stored = self.calibrations.get(pair_key(a, b))
        return Calibration.from_dict(stored) if stored else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sides"] = [asdict(s) for s in self.sides]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BridgeMeta:
        sides = tuple(Side(**s) for s in d["sides"])
        if len(sides) != 2:
            raise InputError(f"a bridge connects exactly two spaces, metadata lists {len(sides)}")
        return cls(
            name=d["name"],
            overlap=d["overlap"],
            sides=sides,  # type: ignore[arg-type]
            # Bridge files written before per-kind statistics existed hold plain BatchNorm layers.
            head=HeadSpec(**({"norm_stats": "shared"} | d["head"])),
            hyper=dict(d.get("hyper", {})),
            data_fingerprint=d.get("data_fingerprint"),
            metrics=dict(d.get("metrics", {})),
            source=d.get("source", "trained"),
            package_version=d.get("package_version", ""),
            calibrations=dict(d.get("calibrations", {})),
        )

    @property
    def spaces(self) -> tuple[str, str]:
        return (self.sides[0].space, self.sides[1].space)

    def side(self, space: str) -> Side:
        for s in self.sides:
            if s.space == space:
                return s
        raise IncompatibleError(f"bridge {self.name!r} connects {' and '.join(self.spaces)}, not {space!r}")

    def input_kind(self, space: str, modality: str) -> str:
        """Which kind of training batch ("overlap" or "memory") `modality` in `space` corresponds to."""
        side = self.side(space)
        if modality == self.overlap:
            return "overlap"
        if modality == side.memory:
            return "memory"
        raise IncompatibleError(
            f"bridge {self.name!r} projects {self.overlap} or {side.memory} through its {space} side, not {modality!r}"
        )


# --- the bridge file's header, read without torch -------------------------------------------------


def read_header_meta(path: str | Path) -> tuple[BridgeMeta, str]:
    """Metadata and fingerprint of a .safetensors bridge file, from its header (no tensors are loaded). A
    released .pt holds none: bridge/fast.py read_bridge_meta reads either format."""
    path = Path(path)
    header = _read_header(path)
    try:
        meta = BridgeMeta.from_dict(json.loads(header[META_KEY]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: bridge metadata is malformed ({exc})") from exc
    return meta, header.get("fingerprint", "")


def calibration_sidecar(path: str | Path) -> Path:
    """Where the score calibrations of a released .pt bridge are kept (a .pt file holds no metadata)."""
    path = Path(path)
    return path.with_name(path.name + ".calibration.json")


def sidecar_calibrations(path: Path, fingerprint: str) -> dict[str, Any]:
    """The calibrations of a .pt bridge's sidecar, if it was made for these very weights."""
    sidecar = calibration_sidecar(path)
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        stored, calibrations = data["fingerprint"], dict(data["calibrations"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{sidecar}: malformed calibration file ({exc})") from None
    if stored != fingerprint:
        log.warning("%s was made for other weights (%s, not %s): ignored", sidecar, stored, fingerprint)
        return {}
    return calibrations


def _read_header(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    if not path.is_file():
        raise InputError(f"{path}: bridge file not found")
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise InputError(f"{path}: not a safetensors bridge file ({_first_line(exc)})") from exc
    if META_KEY not in header:
        raise InputError(f"{path}: safetensors file has no avsearch bridge metadata")
    return header


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
