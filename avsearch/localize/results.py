"""What localisation and matching answer: plain dataclasses with to_dict() for JSON (CLI and server)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.localize.proposals import Box


@dataclass(frozen=True)
class ScoredBox:
    box: Box
    score: float  # cosine with the sound in the bridge's shared space
    rank: int  # 1 = best

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"rank": self.rank, "box": self.box.to_list(), "score": round(self.score, 6)}
        d["source"] = self.box.source
        if self.box.label is not None:
            d["label"] = self.box.label
        if self.box.det_score is not None:
            d["detector_score"] = round(self.box.det_score, 6)
        return d


@dataclass
class Localization:
    """Proposals of one picture scored against one sound, best first. Boxes are [x0, y0, x1, y1] in pixels
    of the picture as shown (EXIF rotation applied), x1/y1 exclusive."""

    audio: str
    image: str
    width: int
    height: int
    proposals: list[ScoredBox]
    whole_image_score: float
    proposal_source: str  # "selective search (fast) + grid", "detector ...", "boxes file"
    bridge: dict[str, str] = field(default_factory=dict)

    @property
    def best(self) -> ScoredBox:
        return self.proposals[0]

    @property
    def confidence(self) -> float:
        """The match confidence: the best proposal's score."""
        return self.best.score

    def drawn_size(self, max_pixels: int | None = None) -> tuple[int, int]:
        """(width, height) of the heat map and overlay: the picture as shown, scaled down to at most
        `max_pixels` pixels (default: configs/localize.toml [heatmap] max_pixels). The size a header
        declares is not bounded by decoding (a JPEG decodes at 1/8 scale), so the drawing must be."""
        from avsearch.localize.config import load_localize_config
        from avsearch.localize.heatmap import capped_size

        cap = load_localize_config().heatmap.max_pixels if max_pixels is None else max_pixels
        return capped_size(self.width, self.height, cap)

    def _drawn_box(self, box: Box, size: tuple[int, int]) -> Box:
        return box if size == (self.width, self.height) else box.scaled(size[0] / self.width, size[1] / self.height)

    def heatmap(self, mode: str = "max", max_pixels: int | None = None) -> np.ndarray:
        """(height, width) float32 in [0, 1] at drawn_size(max_pixels): per-pixel max ("max") or
        score-weighted sum ("sum") of the proposal scores, the whole-image score mapping to 0."""
        from avsearch.localize.heatmap import heat

        size = self.drawn_size(max_pixels)
        boxes, scores = [self._drawn_box(p.box, size) for p in self.proposals], [p.score for p in self.proposals]
        # Only what scores above the whole picture lights up: a box the sound fits no better than the
        # whole picture says nothing about where the sound is.
        return heat(boxes, scores, size[0], size[1], mode, floor=self.whole_image_score)

    def save_overlay(
        self, path: str | Path, mode: str = "max", alpha: float = 0.5, max_pixels: int | None = None
    ) -> Path:
        """Write a PNG of the picture with the heat map blended in and the best box drawn, at
        drawn_size(max_pixels)."""
        from avsearch.localize.heatmap import overlay, save_png
        from avsearch.media.image import load_image

        size = self.drawn_size(max_pixels)
        picture = load_image(self.image)
        if picture.size != size:  # decoded reduced, or drawn smaller than shown
            picture = picture.resize(size)
        caption = f"{self.best.score:.3f}" + (f" {self.best.box.label}" if self.best.box.label else "")
        best = self._drawn_box(self.best.box, size)
        return save_png(overlay(picture, self.heatmap(mode, max_pixels), best, caption, alpha), path)

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        shown = self.proposals if top is None else self.proposals[:top]
        return {
            "audio": self.audio,
            "image": self.image,
            "size": [self.width, self.height],
            "best": self.best.to_dict(),
            "whole_image_score": round(self.whole_image_score, 6),
            "proposal_source": self.proposal_source,
            "proposals": [p.to_dict() for p in shown],
            "proposal_count": len(self.proposals),
            "bridge": self.bridge,
        }


@dataclass
class MatchResult:
    """Whether a sound belongs in a picture: the best proposal's score against a threshold."""

    localization: Localization
    threshold: float
    threshold_source: str  # "given", "bridge calibration (from ...)", or the config default (said so)
    probability: float | None = None  # P(related | confidence) from the bridge's calibration; None: uncalibrated

    @property
    def confidence(self) -> float:
        return self.localization.confidence

    @property
    def matches(self) -> bool:
        return self.confidence >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        loc = self.localization
        return {
            "audio": loc.audio,
            "image": loc.image,
            "matches": self.matches,
            "confidence": round(self.confidence, 6),
            "whole_image_score": round(loc.whole_image_score, 6),
            "best": loc.best.to_dict(),
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "probability": None if self.probability is None else round(self.probability, 4),
            "proposal_source": loc.proposal_source,
            "bridge": loc.bridge,
        }
