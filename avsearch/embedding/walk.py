"""Walk sources (files and folders) into a sorted list of media files, grouped by detected kind."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from avsearch.errors import InputError
from avsearch.media.detect import detect_kind

log = logging.getLogger(__name__)

NOT_MEDIA = "not an audio, image or point-cloud file"


def collect_files(sources: Sequence[Path | str]) -> list[Path]:
    """Every regular file under `sources` (recursively; hidden names skipped), sorted, de-duplicated.

    Raises InputError for a source that does not exist.
    """
    found: set[Path] = set()
    for source in sources:
        root = Path(source).expanduser()
        if root.is_file():
            found.add(root.resolve())
        elif root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # also skips our .partial
                found.update((Path(dirpath) / f).resolve() for f in filenames if not f.startswith("."))
        else:
            raise InputError(f"{root}: no such file or folder")
    return sorted(found)


def group_by_kind(files: Sequence[Path]) -> tuple[dict[str, list[Path]], list[tuple[Path, str]]]:
    """Split files by content into {modality: [paths]} and [(path, reason)] for the rest."""
    groups: dict[str, list[Path]] = {}
    skipped: list[tuple[Path, str]] = []
    for path in files:
        kind = detect_kind(path)
        if kind is None:
            skipped.append((path, NOT_MEDIA))
        else:
            groups.setdefault(kind, []).append(path)
    return groups, skipped
