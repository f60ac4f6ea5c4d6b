"""Where is the sound in the picture, and does it belong there (C-MCR paper 4.3.3-4.3.4, B.2-B.3).

The sound goes through CLAP and the bridge's CLAP head; the picture's proposals (whole image first) are
cropped, embedded by CLIP with the preprocessing of whole pictures and projected by the bridge's CLIP
head; each proposal's score is its cosine with the projected sound in the shared space. The best
proposal is the localisation, its score the match confidence.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.errors import IncompatibleError, InputError
from avsearch.localize.boxes_file import boxes_for, read_boxes
from avsearch.localize.config import LocalizeConfig, load_localize_config
from avsearch.localize.crops import CropEmbedder
from avsearch.localize.proposals import Box, ProposalSource, finalize, search_and_grid
from avsearch.localize.results import Localization, MatchResult, ScoredBox
from avsearch.media.image import load_image, open_image
from avsearch.modalities import AUDIO, CLAP, CLIP, IMAGE

log = logging.getLogger(__name__)


def upright_size(path: Path) -> tuple[int, int]:
    """(width, height) of a picture as shown (EXIF rotation applied), from its header."""
    with open_image(path) as img:
        width, height = img.size
        orientation = img.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


class Localizer:
    """Loaded models and settings for localising sounds in pictures; build once, call many times.

    bridge: a bridge file (.safetensors or released .pt), or None for configs/localize.toml's published
    one (clap_clip.pt), found like every weight file. proposals: "auto", "search" or "detector"
    (default: the config's). Encoders load through the registry (encoder_loader for tests).
    """

    def __init__(
        self,
        bridge: str | Path | None = None,
        weights_dir: str | Path | None = None,
        device: str | None = None,
        proposals: str | None = None,
        config: LocalizeConfig | None = None,
        encoder_loader: Any = None,
    ) -> None:
        from avsearch.bridge.io import open_bridge
        from avsearch.device import pick_device
        from avsearch.encoders.weights import resolve_weight

        self.config = config or load_localize_config()
        self.weights_dir = weights_dir
        self.device = pick_device(device)
        path = Path(bridge) if bridge is not None else resolve_weight(self.config.models.bridge, weights_dir)
        if bridge is not None and not path.is_file():
            raise InputError(f"{path}: bridge file not found")
        self.bridge_path = path
        self.bridge = open_bridge(path, self.device)
        if not {CLIP, CLAP} <= set(self.bridge.meta.spaces):
            raise IncompatibleError(
                f"{path}: bridge connects {' and '.join(self.bridge.meta.spaces)}; localisation needs clip and clap"
            )
        self._load = encoder_loader or self._registry_loader
        self._clip: Any = None
        self._clap: Any = None
        self._source_name, self._source = self._proposal_source(proposals or self.config.proposals.source)
        self._audio_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._image_cache: OrderedDict[tuple[str, tuple[Box, ...] | None], tuple] = OrderedDict()

    # -- models ------------------------------------------------------------------------------------
    def _registry_loader(self, name: str, towers: tuple[str, ...]) -> Any:
        from avsearch.encoders.registry import load_encoder

        return load_encoder(name, towers, self.weights_dir, self.device)

    def _proposal_source(self, source: str) -> tuple[str, ProposalSource]:
        from avsearch.localize.config import SOURCES
        from avsearch.localize.detector import detector_available, detector_source

        if source not in SOURCES:
            raise InputError(f"unknown proposal source {source!r}; valid: {', '.join(SOURCES)}")
        name = self.config.detector.name
        if source == "detector" or (source == "auto" and detector_available(name, self.weights_dir)):
            return f"detector {name}", detector_source(self.config.detector, self.weights_dir, self.device)
        return f"selective search ({self.config.proposals.search_mode}) + grid", search_and_grid(self.config.proposals)

    @property
    def clip(self) -> Any:
        if self._clip is None:
            self._clip = self._load(self.bridge.meta.side(CLIP).encoder, (IMAGE,))
        return self._clip

    @property
    def clap(self) -> Any:
        if self._clap is None:
            self._clap = self._load(self.bridge.meta.side(CLAP).encoder, (AUDIO,))
        return self._clap

    def bridge_info(self) -> dict[str, str]:
        return {"name": self.bridge.meta.name, "file": str(self.bridge_path), "fingerprint": self.bridge.fingerprint}

    # -- embeddings --------------------------------------------------------------------------------
    def audio_vector(self, audio: str | Path) -> np.ndarray:
        """The sound in the bridge's shared space: (D,) float32, unit length."""
        key = str(audio)
        if key not in self._audio_cache:
            path = _existing(audio, "audio")
            native = self.clap.encode_files(AUDIO, [path])
            self._audio_cache[key] = self.bridge.project(CLAP, native, modality=AUDIO)[0]
            _trim(self._audio_cache, 256)
        return self._audio_cache[key]

    def image_proposals(self, image: str | Path, boxes: list[Box] | None = None) -> tuple:
        """(boxes, projected crop vectors (N, D), width, height, source name) of a picture; boxes in the
        picture's pixels as shown, whole image first. `boxes` replaces the proposal source."""
        key = (str(image), tuple(boxes) if boxes is not None else None)
        if key not in self._image_cache:
            path = _existing(image, "image")
            picture = load_image(path)
            width, height = upright_size(path)
            sx, sy = picture.size[0] / width, picture.size[1] / height  # load_image may decode reduced
            if boxes is not None:
                found, source = [b.scaled(sx, sy) for b in boxes], "boxes file"
            else:
                found, source = self._source(picture), self._source_name
            kept = finalize(found, picture.size[0], picture.size[1], self.config.proposals)
            embedder = CropEmbedder(self.clip, self.config.crops.batch)
            vectors = self.bridge.project(CLIP, embedder.embed(picture, kept), modality=IMAGE)
            shown = [b.scaled(1 / sx, 1 / sy) for b in kept]
            self._image_cache[key] = (shown, vectors, width, height, source)
            _trim(self._image_cache, 16)
        return self._image_cache[key]

    # -- the two questions ------------------------------------------------------------------------
    def localize(self, audio: str | Path, image: str | Path, boxes: list[Box] | None = None) -> Localization:
        """Every proposal scored against the sound, best first."""
        sound = self.audio_vector(audio)  # the cheaper input first: a bad sound fails before any crop
        shown, vectors, width, height, source = self.image_proposals(image, boxes)
        scores = vectors @ sound
        order = np.argsort(-scores, kind="stable")
        ranked = [ScoredBox(shown[i], float(scores[i]), rank) for rank, i in enumerate(order, start=1)]
        return Localization(
            audio=str(audio),
            image=str(image),
            width=width,
            height=height,
            proposals=ranked,
            whole_image_score=float(scores[0]),
            proposal_source=source,
            bridge=self.bridge_info(),
        )

    def threshold(self, given: float | None = None) -> tuple[float, str]:
        """The match threshold and where it came from: given, the bridge's score calibration (its 0.5
        level for sound-picture pairs: above it a pair is more likely related than not), or the config."""
        if given is not None:
            return float(given), "given"
        calibration = self.bridge.meta.calibration(AUDIO, IMAGE)
        if calibration is not None and calibration.score_at_50 is not None:
            return calibration.score_at_50, f"bridge calibration (from {calibration.source})"
        return (
            self.config.match.threshold,
            "default (configs/localize.toml [match]; uncalibrated: the bridge holds no calibration)",
        )

    def match(
        self, audio: str | Path, image: str | Path, threshold: float | None = None, boxes: list[Box] | None = None
    ) -> MatchResult:
        """Does the sound belong in the picture: the best proposal's score against the threshold."""
        found = self.localize(audio, image, boxes)
        value, source = self.threshold(threshold)
        calibration = self.bridge.meta.calibration(AUDIO, IMAGE)
        probability = None if calibration is None else float(calibration.probability(found.confidence))
        return MatchResult(found, value, source, probability)


def _existing(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: no such {what} file")
    return path


def _trim(cache: OrderedDict, size: int) -> None:
    while len(cache) > size:
        cache.popitem(last=False)


def load_boxes(boxes_file: str | Path | None, image: str | Path) -> list[Box] | None:
    """The boxes a --boxes file gives `image`, or None without a file."""
    return None if boxes_file is None else boxes_for(read_boxes(boxes_file), image, boxes_file)


_localizers: dict[tuple, Localizer] = {}


def get_localizer(
    bridge: str | Path | None = None,
    weights_dir: str | Path | None = None,
    device: str | None = None,
    proposals: str | None = None,
) -> Localizer:
    """A Localizer per settings, built once per process (models stay loaded between calls)."""
    key = (str(bridge), str(weights_dir), device, proposals)
    if key not in _localizers:
        _localizers[key] = Localizer(bridge, weights_dir, device, proposals)
    return _localizers[key]


def localize(
    audio_path: str | Path,
    image_path: str | Path,
    *,
    bridge: str | Path | None = None,
    weights_dir: str | Path | None = None,
    device: str | None = None,
    proposals: str | None = None,
    boxes_file: str | Path | None = None,
) -> Localization:
    """Where in the picture the sound comes from: proposals ranked by score, best box, whole-image score."""
    loc = get_localizer(bridge, weights_dir, device, proposals)
    return loc.localize(audio_path, image_path, load_boxes(boxes_file, image_path))


def match(
    audio_path: str | Path,
    image_path: str | Path,
    *,
    threshold: float | None = None,
    bridge: str | Path | None = None,
    weights_dir: str | Path | None = None,
    device: str | None = None,
    proposals: str | None = None,
    boxes_file: str | Path | None = None,
) -> MatchResult:
    """Whether the sound belongs in the picture: best proposal's score, whole-image score, threshold."""
    loc = get_localizer(bridge, weights_dir, device, proposals)
    return loc.match(audio_path, image_path, threshold, load_boxes(boxes_file, image_path))
