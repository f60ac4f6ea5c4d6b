"""SearchFilters: every filter a search takes (a path glob, a `where` expression, the command line's
shortcuts compiled into the filter language), parsed once when made; predicate() per table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from avsearch.errors import InputError
from avsearch.search.filters.parse import parse_where
from avsearch.search.filters.sql import columns_used, quote, render
from avsearch.search.filters.terms import COLUMNS, Node


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _until(value: str) -> str:
    """--until D: through the end of day D when D is a bare date, else through D itself."""
    try:
        day = date.fromisoformat(value.strip())
        return f"mtime < {quote((day + timedelta(days=1)).isoformat())}"
    except (ValueError, OverflowError):  # not a bare date, or 9999-12-31 (refused by the parser's range check)
        return f"mtime <= {quote(value)}"


@dataclass(frozen=True)
class SearchFilters:
    """Optional filters on the rows searched; every one given must hold (AND).

    path_glob: fnmatch pattern on the full path, e.g. "*/birds/*". where: an expression of the filter
    language (module docstring). The others are the command line's shortcuts and compile into the same
    language: ext (any of), folder (that folder or below, relative to the indexed root), min/max
    duration (seconds, inclusive), tags (every one), since/until (mtime; a bare --until date counts
    through its whole day). Invalid filters raise InputError when constructed.
    """

    path_glob: str | None = None
    where: str | None = None
    ext: tuple[str, ...] = ()
    folder: str | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    tags: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    parsed: Node | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ext", tuple(self.ext))
        object.__setattr__(self, "tags", tuple(self.tags))
        text = self.expression()
        object.__setattr__(self, "parsed", parse_where(text) if text is not None else None)

    def expression(self) -> str | None:
        """The whole filter (where plus the flags) in the filter language; None when there is none."""
        parts = [f"({self.where})"] if self.where is not None and self.where.strip() else []
        if self.ext:
            parts.append(f"ext IN ({', '.join(quote(e) for e in self.ext)})")
        folder = (self.folder or "").strip("/")
        if folder:
            parts.append(f"(folder = {quote(folder)} OR folder LIKE {quote(_like_escape(folder) + '/%')})")
        if self.min_duration is not None:
            parts.append(f"duration >= {float(self.min_duration)!r}")
        if self.max_duration is not None:
            parts.append(f"duration <= {float(self.max_duration)!r}")
        parts += [f"tag = {quote(t)}" for t in self.tags]
        if self.since is not None:
            parts.append(f"mtime >= {quote(self.since)}")
        if self.until is not None:
            parts.append(_until(self.until))
        if len(parts) == 1 and self.where is not None and self.where.strip():
            return self.where  # as typed, so an error's positions are the user's
        return " AND ".join(parts) or None

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return self.parsed is not None or self.path_glob is not None

    def predicate(self, modality: str, table_columns: list[str]) -> str | None:
        """The SQL predicate on `modality`'s table; InputError when the table lacks a metadata column."""
        if self.parsed is None:
            return None
        for name in sorted(columns_used(self.parsed)):
            col = COLUMNS[name]
            if col.stored and col.stored not in table_columns:
                raise InputError(
                    f"this index has no {name!r} column (built before metadata filters): run "
                    "`avsearch index FOLDER` to add it (from the files' headers, no re-embedding)"
                )
        return render(self.parsed, modality)
