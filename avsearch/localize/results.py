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

    def heatmap(self, mode: str = "max") -> np.ndarray:
        """(height, width) float32 in [0, 1]: per-pixel max ("max") or score-weighted sum ("sum") of the
        proposal scores, the whole-image score mapping to 0."""
        from avsearch.localize.heatmap import heat

        boxes, scores = [p.box for p in self.proposals], [p.score for p in self.proposals]
        # Only what scores above the whole picture lights up: a box the sound fits no better than the
        # whole picture says nothing about where the sound is.
        return heat(boxes, scores, self.width, self.height, mode, floor=self.whole_image_score)

    def save_overlay(self, path: str | Path, mode: str = "max", alpha: float = 0.5) -> Path:
        """Write a PNG of the picture with the heat map blended in and the best box drawn."""
        from avsearch.localize.heatmap import overlay, save_png
        from avsearch.media.image import load_image

        picture = load_image(self.image)
        if picture.size != (self.width, self.height):  # decoded reduced: draw on the size users see
            picture = picture.resize((self.width, self.height))
        caption = f"{self.best.score:.3f}" + (f" {self.best.box.label}" if self.best.box.label else "")
        return save_png(overlay(picture, self.heatmap(mode), self.best.box, caption, alpha), path)

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
