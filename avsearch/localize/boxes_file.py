"""`--boxes FILE`: proposals from any detector (GLIP, as in the paper, or anything else), as JSON.

Accepted layouts (pixels of the upright picture, x1/y1 exclusive; the label is optional):
- a list of boxes, for one picture: [[x0, y0, x1, y1, "dog"], [x0, y0, x1, y1], ...];
- per picture: {"park.jpg": [[x0, y0, x1, y1, "dog"], ...], ...}, keyed by the picture's file name or path
  as given on the command line.
A box may also be an object {"box": [x0, y0, x1, y1], "label": "dog", "score": 0.9}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from avsearch.errors import InputError
from avsearch.localize.proposals import Box


def _box(raw: Any, where: str) -> Box:
    label, score = None, None
    if isinstance(raw, dict):
        label, score, raw = raw.get("label"), raw.get("score"), raw.get("box")
    if not isinstance(raw, list | tuple) or len(raw) not in (4, 5):
        raise InputError(f"{where}: a box is [x0, y0, x1, y1] or [x0, y0, x1, y1, label], got {raw!r}")
    if len(raw) == 5:
        label = raw[4]
    try:
        x0, y0, x1, y1 = (float(v) for v in raw[:4])
    except (TypeError, ValueError):
        raise InputError(f"{where}: box corners must be numbers, got {raw[:4]!r}") from None
    if not (x1 > x0 and y1 > y0):
        raise InputError(f"{where}: box {raw[:4]!r} has no area (need x1 > x0 and y1 > y0)")
    return Box(x0, y0, x1, y1, "file", None if label is None else str(label), None if score is None else float(score))


def read_boxes(path: str | Path) -> list[Box] | dict[str, list[Box]]:
    """The boxes of a --boxes file: one list, or a dict picture name -> list. InputError names the problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such boxes file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a JSON boxes file ({exc})") from None
    if isinstance(data, list):
        return [_box(b, f"{path} box {i}") for i, b in enumerate(data)]
    if isinstance(data, dict):
        out = {}
        for name, boxes in data.items():
            if not isinstance(boxes, list):
                raise InputError(f"{path}: {name!r} must map to a list of boxes")
            out[str(name)] = [_box(b, f"{path} [{name!r}] box {i}") for i, b in enumerate(boxes)]
        return out
    raise InputError(f"{path}: expected a list of boxes or an object of picture name -> boxes")


def boxes_for(found: list[Box] | dict[str, list[Box]], image: str | Path, source: str | Path) -> list[Box]:
    """The boxes a boxes file gives picture `image`: by path as given, then by file name."""
    if isinstance(found, list):
        return found
    for key in (str(image), Path(image).name):
        if key in found:
            return found[key]
    raise InputError(f"{source}: no boxes for {Path(image).name!r} (keys are picture file names or paths)")
