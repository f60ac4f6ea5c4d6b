"""Text inputs: validation and caption files (one caption a line)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from avsearch.errors import InputError


def check_texts(texts: Sequence[str]) -> list[str]:
    """Strip texts and refuse empty ones (InputError naming the position)."""
    if isinstance(texts, str):
        texts = [texts]
    cleaned = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"text #{i} is not a string: {text!r}")
        stripped = " ".join(text.split())  # collapse newlines/tabs: tokenizers see one line
        if not stripped:
            raise InputError(f"text #{i} is empty")
        cleaned.append(stripped)
    return cleaned


def read_captions(path: Path | str) -> list[str]:
    """Captions of a caption file in file order (see read_caption_lines)."""
    return [caption for _, caption in read_caption_lines(path)]


def read_caption_lines(path: Path | str) -> list[tuple[int, str]]:
    """Read a caption file: UTF-8, one caption a line; blank lines are skipped.

    Returns (1-based line number, caption) pairs in file order. Raises InputError when the file is
    missing, not UTF-8 text or holds no caption.
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InputError(f"{path}: caption file not found") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: caption file is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read caption file ({exc.strerror})") from exc
    captions = [(n, " ".join(line.split())) for n, line in enumerate(raw.splitlines(), start=1)]
    captions = [(n, c) for n, c in captions if c]
    if not captions:
        raise InputError(f"{path}: caption file holds no caption")
    return captions
