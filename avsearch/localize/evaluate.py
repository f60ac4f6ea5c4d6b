"""`avsearch eval localize` / `eval counterfactual`: tables 2 and 3 of the paper over an annotated folder.

Layout of --data DIR (one of):
- DIR/annotations.json: a list of {"image": "frames/x.jpg", "audio": "audio/x.wav", "boxes": [[x0, y0, x1, y1],
  ...]} with paths relative to DIR and boxes in pixels of the picture as shown. Optional per entry:
  "normalized": true (boxes in [0, 1] of width and height), "consensus": true (boxes of several annotators:
  Flickr-SoundNet's consensus map). "boxes": [] marks a negative (counterfactual sets only).
- DIR/vggss.json as VGGSS publishes it: a list of {"file": "<id>", "bbox": [[x0, y0, x1, y1], ...]} with
  boxes normalised to [0, 1]; pictures DIR/frames/<id>.jpg and sounds DIR/audio/<id>.wav.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.errors import InputError
from avsearch.localize import metrics
from avsearch.localize.boxes_file import boxes_for, read_boxes
from avsearch.localize.pipeline import Localizer


@dataclass(frozen=True)
class Sample:
    name: str
    image: Path
    audio: Path
    boxes: tuple[tuple[float, ...], ...]  # empty: a negative
    normalized: bool = False
    consensus: bool = False


@dataclass
class EvalReport:
    n: int
    values: dict[str, float]
    per_sample: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"n": self.n, **{k: round(v, 4) for k, v in self.values.items()}}
        if per_sample:
            d["samples"] = self.per_sample
        return d


def _entry(raw: Any, data: Path, i: int) -> Sample:
    if not isinstance(raw, dict):
        raise InputError(f"{data}: annotation {i} is not an object")
    if "file" in raw and "bbox" in raw:  # VGGSS
        name = str(raw["file"])
        return Sample(name, data / "frames" / f"{name}.jpg", data / "audio" / f"{name}.wav", _boxes(raw["bbox"]), True)
    missing = [k for k in ("image", "audio", "boxes") if k not in raw]
    if missing:
        raise InputError(f"{data}: annotation {i} lacks {', '.join(missing)}")
    return Sample(
        str(raw.get("name", raw["image"])),
        data / raw["image"],
        data / raw["audio"],
        _boxes(raw["boxes"], f"{data}: annotation {i}"),
        bool(raw.get("normalized", False)),
        bool(raw.get("consensus", False)),
    )


def _boxes(raw: Any, where: str = "annotation") -> tuple[tuple[float, ...], ...]:
    if not isinstance(raw, list) or not all(isinstance(b, list) and len(b) >= 4 for b in raw):
        raise InputError(f"{where}: boxes must be a list of [x0, y0, x1, y1]")
    return tuple(tuple(float(v) for v in b[:4]) for b in raw)


def read_samples(data: str | Path) -> list[Sample]:
    """The annotated pairs of a --data folder (see the module docstring for the layouts)."""
    data = Path(data)
    for name in ("annotations.json", "vggss.json"):
        if (data / name).is_file():
            try:
                raw = json.loads((data / name).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InputError(f"{data / name}: not a JSON annotation file ({exc})") from None
            if not isinstance(raw, list):
                raise InputError(f"{data / name}: expected a list of annotations")
            return [_entry(r, data, i) for i, r in enumerate(raw)]
    raise InputError(f"{data}: no annotations.json or vggss.json (see `avsearch eval localize --help`)")


def _score(
    samples: list[Sample], loc: Localizer, grid: int, boxes_file: Path | None, progress: Callable[[int], None] | None
) -> tuple[list[float], list[float], list[dict[str, Any]]]:
    given = read_boxes(boxes_file) if boxes_file is not None else None
    cious, conf, rows = [], [], []
    for s in samples:
        for path in (s.image, s.audio):
            if not path.is_file():
                raise InputError(f"{path}: listed for {s.name!r} but not found")
        found = loc.localize(s.audio, s.image, boxes_for(given, s.image, boxes_file) if given is not None else None)
        w, h = found.width, found.height
        gw, gh = (1.0, 1.0) if s.normalized else (w, h)  # normalised boxes rasterise as int(grid * x)
        gt = metrics.ground_truth_map(s.boxes, gw, gh, grid, s.consensus)
        value = metrics.ciou(metrics.box_mask(found.best.box.to_list(), w, h, grid), gt) if s.boxes else 0.0
        cious.append(value)
        conf.append(found.confidence)
        rows.append({"name": s.name, "ciou": round(value, 4), "confidence": round(found.confidence, 6)})
        rows[-1]["best"] = found.best.box.to_list()
        if progress is not None:
            progress(1)
    return cious, conf, rows


def evaluate_localization(
    data: str | Path, loc: Localizer, boxes_file: Path | None = None, progress: Callable[[int], None] | None = None
) -> EvalReport:
    """Table 2: cIoU success rate (cIoU >= [eval] ciou_threshold), AUC, and mean cIoU, over positives."""
    samples = [s for s in read_samples(data) if s.boxes]
    if not samples:
        raise InputError(f"{data}: no annotated pairs with boxes")
    cfg = loc.config.eval
    cious, _conf, rows = _score(samples, loc, cfg.grid, boxes_file, progress)
    values = {
        "ciou": 100 * metrics.success_rate(cious, cfg.ciou_threshold),
        "auc": 100 * metrics.auc(cious, cfg.auc_steps),
        "mean_ciou": 100 * float(np.mean(cious)),
    }
    return EvalReport(len(samples), values, rows)


def evaluate_counterfactual(
    data: str | Path, loc: Localizer, boxes_file: Path | None = None, progress: Callable[[int], None] | None = None
) -> EvalReport:
    """Table 3: AP and Max-F1 (paper B.3) over positives and negatives, with the threshold at Max-F1."""
    samples = read_samples(data)
    has_gt = [bool(s.boxes) for s in samples]
    if all(has_gt) or not any(has_gt):
        raise InputError(f"{data}: a counterfactual set needs both positives (boxes) and negatives (boxes: [])")
    cfg = loc.config.eval
    cious, conf, rows = _score(samples, loc, cfg.grid, boxes_file, progress)
    best_f1, delta = metrics.max_f1(has_gt, cious, conf, cfg.ciou_threshold)
    values = {
        "ap": 100 * metrics.average_precision(has_gt, cious, conf, cfg.ciou_threshold, cfg.ap),
        "max_f1": 100 * best_f1,
        "threshold_at_max_f1": delta,
        "positives": float(sum(has_gt)),
        "negatives": float(len(has_gt) - sum(has_gt)),
    }
    return EvalReport(len(samples), values, rows)
