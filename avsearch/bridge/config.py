"""Typed training configuration: a frozen dataclass tree read from TOML, plus typed overrides.

Unknown keys are errors (a typo must not silently train with a default). Presets live in configs/.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_type_hints

from avsearch.bridge.heads import HEAD_KINDS, HeadSpec
from avsearch.bridge.model import BridgeMeta, Side
from avsearch.errors import ConfigError
from avsearch.settings import configs_dir

CONSISTENCY_MODES = ("softmax", "argmax", "random")  # table 5: K/I/J
CONSISTENCY_BACKENDS = ("auto", "exact", "approx")


@dataclass(frozen=True)
class SideConfig:
    space: str  # "clip", "clap", "ulip"
    encoder: str  # encoder registry name
    dim: int = 512
    memory: str = "image"  # the non-overlap modality whose memory this side draws pseudo embeddings from


@dataclass(frozen=True)
class MethodConfig:
    """The paper's hyper-parameters (section 4.1 / 4.2)."""

    tau1: float = 0.01  # eq. 2: temperature of semantic consistency
    tau2: float = 0.01  # eq. 5: overlap-pair InfoNCE (L_ttc)
    tau3: float = 0.01  # eq. 6: pseudo-pair InfoNCE (L_avc)
    noise_var: float = 0.004  # eq. 3: sigma^2 of the semantic-completion noise
    lambda_intra: float = 0.1  # eq. 10: weight of L_intra


@dataclass(frozen=True)
class ConsistencyConfig:
    mode: str = "softmax"  # softmax (eq. 2), argmax (row I) or random (row J)
    # auto: exact on CUDA, approx on a CPU from approx_above memory rows; exact: the whole memory, in
    # blocks; approx: exact scores over each query's nprobe nearest IVF lists (bridge/memory_index.py)
    backend: str = "auto"
    approx_above: int = 100_000  # auto on a CPU: memory rows from which approx pays (benchmarks/bridge.py)
    nlist: int = 0  # approx: IVF lists (0: about sqrt(memory rows))
    nprobe: int = 0  # approx: lists scanned per query (0: the smallest budget reaching target_cosine)
    target_cosine: float = 0.999  # approx: mean cosine to exact that a tuned nprobe must reach
    check_queries: int = 256  # approx: sampled queries to tune nprobe on, and as many others to check on
    query_chunk: int = 1024  # exact backend: rows of queries per block (bounds memory)
    memory_chunk: int = 65536  # exact backend: rows of memory per block


@dataclass(frozen=True)
class AblationConfig:
    """Table 5 switches. All on = row K (the full method)."""

    renorm: bool = True  # re-normalise after adding noise (row G turns it off)
    noise: bool = True  # add semantic-completion noise (row H turns noise and renorm off)
    ttc: bool = True  # L_ttc: contrast projected overlap pairs (text-text in the AV bridge)
    avc: bool = True  # L_avc: contrast projected pseudo pairs (image-audio in the AV bridge)
    intra: tuple[str, ...] = ()  # sides whose intra-MCR term is on; empty in TOML means both


@dataclass(frozen=True)
class OptimConfig:
    epochs: int = 36
    batch_size: int = 10240
    lr: float = 1e-3
    weight_decay: float = 0.01  # AdamW's default; the paper does not state one
    min_lr_ratio: float = 0.0  # cosine decays from lr to lr * min_lr_ratio
    seed: int = 0
    holdout: float = 0.01  # share of overlap pairs kept out of training and scored after every epoch


@dataclass(frozen=True)
class TrainConfig:
    name: str
    overlap: str  # modality both spaces share
    sides: tuple[SideConfig, SideConfig]
    head: HeadSpec = field(default_factory=HeadSpec)
    method: MethodConfig = field(default_factory=MethodConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        spaces = [s.space for s in self.sides]
        if len(self.sides) != 2 or spaces[0] == spaces[1]:
            raise ConfigError(f"a bridge needs two different spaces, got {spaces}")
        if not self.ablation.intra:  # default: the intra term of both sides
            object.__setattr__(self, "ablation", replace(self.ablation, intra=tuple(spaces)))
        for space in self.ablation.intra:
            if space not in spaces and space != "none":
                raise ConfigError(f"ablation.intra names {space!r}; this bridge's sides are {spaces}")
        if self.head.kind not in HEAD_KINDS:
            raise ConfigError(f"unknown head kind {self.head.kind!r}; valid kinds: {', '.join(HEAD_KINDS)}")
        if self.consistency.mode not in CONSISTENCY_MODES:
            raise ConfigError(
                f"unknown consistency mode {self.consistency.mode!r}; valid: {', '.join(CONSISTENCY_MODES)}"
            )
        if self.consistency.backend not in CONSISTENCY_BACKENDS:
            raise ConfigError(
                f"unknown consistency backend {self.consistency.backend!r}; valid: {', '.join(CONSISTENCY_BACKENDS)}"
            )
        if not 0 < self.consistency.target_cosine <= 1:
            raise ConfigError(f"consistency.target_cosine must be in (0, 1], got {self.consistency.target_cosine}")
        for name, value in (("epochs", self.optim.epochs), ("batch_size", self.optim.batch_size)):
            if value < 1:
                raise ConfigError(f"optim.{name} must be at least 1, got {value}")
        if self.optim.lr <= 0:
            raise ConfigError(f"optim.lr must be positive, got {self.optim.lr}")
        if not 0 <= self.optim.holdout < 0.5:
            raise ConfigError(f"optim.holdout must be in [0, 0.5), got {self.optim.holdout}")

    @property
    def intra_sides(self) -> tuple[str, ...]:
        return tuple(s for s in self.ablation.intra if s != "none")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def embed_routes(self) -> dict[str, list[str]]:
        """Encoders per modality this bridge trains on: the overlap modality in both spaces (same rows),
        each side's memory modality in that side's space. Used by `avsearch embed --config`."""
        routes: dict[str, list[str]] = {self.overlap: [s.encoder for s in self.sides]}
        for side in self.sides:
            if side.encoder not in routes.setdefault(side.memory, []):
                routes[side.memory].append(side.encoder)
        return routes

    def bridge_meta(self) -> BridgeMeta:
        """Metadata of the bridge this config trains (hyper-parameters included)."""
        sides = tuple(Side(s.space, s.encoder, s.dim, s.memory) for s in self.sides)
        return BridgeMeta(
            name=self.name,
            overlap=self.overlap,
            sides=sides,
            head=self.head,
            hyper=self.to_dict(),  # type: ignore[arg-type]
        )


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from a TOML table, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if is_dataclass(hint):
        return _build(hint, value, where)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    if getattr(hint, "__origin__", None) is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = hint.__args__
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} entries, got {len(value)}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    return value


def bridge_presets() -> list[str]:
    """Names of the bundled bridge configs: the TOML files in configs/ that declare bridge sides."""
    return sorted(p.stem for p in configs_dir().glob("*.toml") if "[[sides]]" in p.read_text(encoding="utf-8"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to a TOML file, or the name of a bundled preset ("audio_visual", "pointcloud_text")."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = configs_dir() / f"{name_or_path}.toml"
    if preset.is_file():
        return preset
    presets = bridge_presets()
    raise ConfigError(f"{name_or_path}: config file not found (bundled presets: {', '.join(presets)})")


def load_train_config(name_or_path: str | Path) -> TrainConfig:
    """Read a training config from TOML (a path or a bundled preset name)."""
    path = resolve_config_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from exc
    cfg = _build(TrainConfig, data, path.name)
    return cfg


def with_overrides(cfg: TrainConfig, **overrides: Any) -> TrainConfig:
    """Apply flat overrides such as epochs=2, lr=1e-3, ttc=False; None means 'keep the config value'."""
    sections = {f.name: getattr(cfg, f.name) for f in fields(cfg) if is_dataclass(getattr(cfg, f.name))}
    changed: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        owners = [s for s, obj in sections.items() if key in {f.name for f in fields(obj)}]
        if len(owners) != 1:
            raise ConfigError(f"unknown or ambiguous override {key!r}")
        changed.setdefault(owners[0], {})[key] = value
    new = {s: replace(sections[s], **vals) for s, vals in changed.items()}
    return replace(cfg, **new)
