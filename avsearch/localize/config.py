"""Typed settings of localisation and matching, read from configs/localize.toml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from avsearch.errors import ConfigError
from avsearch.settings import load_sections

CONFIG_NAME = "localize.toml"
SOURCES = ("auto", "search", "detector")
SEARCH_MODES = ("fast", "quality")
HEAT_MODES = ("max", "sum")
AP_PROTOCOLS = ("slavc", "all-points")
DETECTORS = ("fasterrcnn_resnet50_fpn_v2", "retinanet_resnet50_fpn_v2")


@dataclass(frozen=True)
class ModelsConfig:
    bridge: str = "clap_clip.pt"  # published bridge file name, resolved like other weights


@dataclass(frozen=True)
class ProposalConfig:
    source: str = "auto"
    max_boxes: int = 50
    dedupe_iou: float = 0.9
    min_side: float = 0.08  # fraction of the image's shorter side
    search_mode: str = "fast"
    search_max_side: int = 500
    search_boxes: int = 30
    grid_scales: tuple[int, ...] = (2, 3, 4)


@dataclass(frozen=True)
class DetectorConfig:
    name: str = "fasterrcnn_resnet50_fpn_v2"
    score_threshold: float = 0.05
    min_size: int = 800
    max_size: int = 1333


@dataclass(frozen=True)
class CropConfig:
    batch: int = 32


@dataclass(frozen=True)
class HeatmapConfig:
    mode: str = "max"
    alpha: float = 0.5
    max_pixels: int = 16_777_216  # heat map and overlay size cap (configs/localize.toml says why)


@dataclass(frozen=True)
class MatchConfig:
    threshold: float = 0.3  # uncalibrated default; see configs/localize.toml


@dataclass(frozen=True)
class EvalConfig:
    grid: int = 224
    ciou_threshold: float = 0.5
    auc_steps: int = 21
    ap: str = "slavc"


@dataclass(frozen=True)
class LocalizeConfig:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    heatmap: HeatmapConfig = field(default_factory=HeatmapConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _choice(value: str, valid: tuple[str, ...], key: str) -> None:
    if value not in valid:
        raise ConfigError(f"{CONFIG_NAME}: {key} = {value!r}; valid: {', '.join(valid)}")


def load_localize_config(path: str | Path | None = None) -> LocalizeConfig:
    """configs/localize.toml (or `path`) as a LocalizeConfig; unknown keys and bad choices are ConfigErrors."""
    cfg = load_sections(LocalizeConfig, CONFIG_NAME, path)
    _choice(cfg.proposals.source, SOURCES, "[proposals] source")
    _choice(cfg.proposals.search_mode, SEARCH_MODES, "[proposals] search_mode")
    _choice(cfg.detector.name, DETECTORS, "[detector] name")
    _choice(cfg.heatmap.mode, HEAT_MODES, "[heatmap] mode")
    _choice(cfg.eval.ap, AP_PROTOCOLS, "[eval] ap")
    if cfg.heatmap.max_pixels < 1:
        raise ConfigError(f"{CONFIG_NAME}: [heatmap] max_pixels must be at least 1")
    if cfg.proposals.max_boxes < 1 or any(n < 1 for n in cfg.proposals.grid_scales):
        raise ConfigError(f"{CONFIG_NAME}: [proposals] max_boxes and grid_scales must be at least 1")
    return cfg
