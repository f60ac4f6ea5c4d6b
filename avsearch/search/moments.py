"""Search hits as moments: the rows of a video's frames, its sound segments and a long recording's
segments (store/table_schema.py `row_ref`) become time ranges of their file in a result list.

Hits of one file whose ranges touch or overlap merge into one moment (its best score kept, its range
widened) when their scores are within `merge_score_gap` of the moment's best; at most
`max_moments_per_file` moments of one file are listed, the others counted on its best (`more`).
Plain files (one row each) pass through unchanged. configs/media.toml [video] holds both settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from avsearch.media.config import media_config
from avsearch.store.table_schema import moment_key, path_key, split_ref

_TOUCH = 1e-6  # seconds: ranges this close touch


@dataclass
class Moment:
    score: float
    path: str
    start: float | None = None  # seconds; None for a whole file
    end: float | None = None
    more: int = 0  # further moments of this file not listed (on its best moment only)
    key: str = ""  # the row key of its best row (`query --id` takes it)


def rows_wanted(k: int, per_file: int | None = None) -> int:
    """Rows to ask the index for so that merging and the per-file cap still leave k moments in most lists."""
    per_file = media_config().video.max_moments_per_file if per_file is None else per_file
    return k * (per_file + 1) + 16


def merge_hits(
    pairs: list[tuple[float, str]],
    k: int,
    track: str,
    per_file: int | None = None,
    gap: float | None = None,
) -> list[Moment]:
    """The k best moments of (score, row name) pairs of one table sorted best first (see the module
    docstring); `track`: the file modality of that table's rows (a moment's id is made with it)."""
    limits = media_config().video
    per_file = limits.max_moments_per_file if per_file is None else per_file
    gap = limits.merge_score_gap if gap is None else gap
    files: dict[str, list[Moment]] = {}  # path -> its moments, best first (pairs come best first)
    for score, ref in pairs:
        path, start, end = split_ref(ref)
        moments = files.setdefault(path, [])
        if start is None or end is None:
            moments.append(Moment(score, path, key=path_key(path)))
            continue
        hit = Moment(score, path, start, end, key=moment_key(path, start, track))
        for m in moments:
            if m.start is not None and m.end is not None and _touch(m, hit) and m.score - score <= gap:
                m.start, m.end = min(m.start, start), max(m.end, end)
                _absorb(moments, m, gap)
                break
        else:
            moments.append(hit)
    out: list[Moment] = []
    for moments in files.values():
        kept = moments[:per_file]
        kept[0].more = len(moments) - len(kept)
        out += kept
    out.sort(key=lambda m: -m.score)  # stable: ties keep the index's order
    return out[:k]


def _touch(a: Moment, b: Moment) -> bool:
    return b.start <= a.end + _TOUCH and b.end >= a.start - _TOUCH  # type: ignore[operator]


def _absorb(moments: list[Moment], grown: Moment, gap: float) -> None:
    """A widened moment may now touch another moment of its file: within the gap, the two become one (the
    better one's score and key kept); a better moment far above it stays as it is."""
    changed = True
    while changed:
        changed = False
        for m in moments:
            if m is grown or m.start is None or not _touch(grown, m) or abs(grown.score - m.score) > gap:
                continue
            keep, drop = (grown, m) if grown.score >= m.score else (m, grown)
            keep.start, keep.end = min(keep.start, drop.start), max(keep.end, drop.end)  # type: ignore[type-var]
            moments.remove(drop)
            grown, changed = keep, True
            break


def fragment(path: str, start: float | None, end: float | None) -> str:
    """A W3C media fragment for a moment (`path#t=83.0,93.0`), the path alone for a whole file."""
    return path if start is None else f"{path}#t={start:.1f},{end:.1f}"


def clock(start: float, end: float) -> str:
    """A moment's range as people read it: 01:23-01:33 (hours when needed: 1:02:03-1:02:13)."""
    return f"{_hms(start)}-{_hms(end)}"


def _hms(seconds: float) -> str:
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
