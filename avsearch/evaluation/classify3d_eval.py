"""`avsearch eval classify3d`: zero-shot top-1/3/5 accuracy over a ModelNet40-style folder.

Layout: DATA/<class>/**/<file> (one folder a class; ModelNet40's DATA/chair/test/chair_0890.off works
with --split test). A folder's class is its name with underscores read as spaces. Files that cannot be
read are skipped and counted, so one bad shape does not void a run of thousands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avsearch.errors import ConfigError, DecodeError, InputError
from avsearch.media.pointcloud import POINTCLOUD_EXTENSIONS, load_pointcloud
from avsearch.search.classify3d import ZeroShot3DClassifier, load_classifier, load_labels, prompt_text

logger = logging.getLogger(__name__)

TOP_KS = (1, 3, 5)


@dataclass
class Classify3DReport:
    n_files: int
    labels: list[str]  # the candidate labels
    topk: dict[int, float]  # k -> accuracy in [0, 1]
    per_class: dict[str, tuple[int, int]]  # folder class -> (top-1 hits, files)
    skipped: list[str] = field(default_factory=list)  # "path: reason"


def _norm(label: str) -> str:
    return prompt_text(label).lower()


def find_labelled_files(data: Path, split: str | None = None) -> list[tuple[Path, str]]:
    """(file, class) pairs under DATA/<class>/..., sorted; `split` keeps files under a folder of that name."""
    if not data.is_dir():
        raise InputError(f"{data}: not a folder (expected one sub-folder per class)")
    pairs: list[tuple[Path, str]] = []
    for class_dir in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(class_dir.rglob("*")):
            rel = f.relative_to(class_dir).parts[:-1]
            if f.is_file() and f.suffix.lower() in POINTCLOUD_EXTENSIONS and (split is None or split in rel):
                pairs.append((f, class_dir.name))
    if not pairs:
        where = f" (split {split!r})" if split else ""
        raise InputError(f"{data}: no point-cloud files in class sub-folders{where}")
    return pairs


def topk_accuracy(scores: np.ndarray, targets: np.ndarray, ks: Sequence[int] = TOP_KS) -> dict[int, float]:
    """scores (N, L), targets (N,) label indices -> {k: fraction whose target is among the k best}."""
    target_score = scores[np.arange(len(targets)), targets][:, None]
    # Ties rank like a stable sort (lower label index first), as in the printed top-k lists.
    earlier = np.arange(scores.shape[1])[None, :] < targets[:, None]
    rank = (scores > target_score).sum(axis=1) + ((scores == target_score) & earlier).sum(axis=1)
    return {k: float((rank < k).mean()) for k in ks}


def evaluate_folder(
    classifier: ZeroShot3DClassifier,
    pairs: Sequence[tuple[Path, str]],
    batch: int = 8,
    progress: Callable[[int], None] | None = None,
) -> Classify3DReport:
    """Classify every file and score it against its folder's class."""
    index = {_norm(label): i for i, label in enumerate(classifier.labels)}
    unknown = sorted({c for _, c in pairs if _norm(c) not in index})
    if unknown:
        raise ConfigError(f"class folders {', '.join(unknown)} are not among the candidate labels")
    all_scores: list[np.ndarray] = []
    targets: list[int] = []
    classes: list[str] = []
    skipped: list[str] = []
    for start in range(0, len(pairs), batch):
        clouds = []
        for path, cls in pairs[start : start + batch]:
            try:
                clouds.append(load_pointcloud(path))
            except DecodeError as exc:
                logger.warning("skipped: %s", exc)
                skipped.append(str(exc))
                continue
            targets.append(index[_norm(cls)])
            classes.append(cls)
        if clouds:
            all_scores.append(classifier.score_clouds(np.stack(clouds)))
        if progress:
            progress(len(pairs[start : start + batch]))
    if not targets:
        raise InputError("no file could be read; nothing to evaluate")
    scores, tgt = np.concatenate(all_scores), np.asarray(targets)
    hits = scores.argmax(axis=1) == tgt
    per_class = {c: (int(hits[[x == c for x in classes]].sum()), classes.count(c)) for c in sorted(set(classes))}
    ks = tuple(k for k in TOP_KS if k <= len(classifier.labels))
    return Classify3DReport(len(targets), classifier.labels, topk_accuracy(scores, tgt, ks), per_class, skipped)


def evaluate_classify3d(
    data: Path,
    labels: str | Path | None = None,
    split: str | None = None,
    bridge: str | Path | None = None,
    weights_dir: Path | str | None = None,
    device: str | None = None,
    progress: Callable[[int], None] | None = None,
    templates: Path | None = None,
) -> Classify3DReport:
    """`avsearch eval classify3d`: candidate labels are `labels` (a set name or file), else the folders."""
    pairs = find_labelled_files(Path(data), split)
    candidates = load_labels(labels) if labels else sorted({prompt_text(c) for _, c in pairs})
    if len(candidates) < 2:
        raise InputError(f"{data}: at least 2 classes are needed, found {len(candidates)}")
    known = {_norm(c) for c in candidates}
    unknown = sorted({c for _, c in pairs if _norm(c) not in known})
    if unknown:  # checked before any model loads
        raise ConfigError(f"class folders {', '.join(unknown)} are not among the candidate labels")
    classifier = load_classifier(candidates, bridge, weights_dir, device, templates)
    return evaluate_folder(classifier, pairs, progress=progress)
