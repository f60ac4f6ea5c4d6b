"""Metadata filters: the `--where` language, the flags that compile into it, and SearchFilters.

The language is a small, safe subset of SQL over the columns users see (COLUMNS), e.g.
`duration > 5 and folder = 'field'`, `ext in ('wav', 'flac') or tag = 'bird'`, `mtime >= '2026-01-01'`:
- comparisons = == != <> < <= > >=, [NOT] IN (...), [NOT] LIKE '...' (% and _; \\ escapes),
  [NOT] BETWEEN a AND b, IS [NOT] NULL, AND, OR, NOT, parentheses;
- single-quoted strings ('' for a quote), numbers (a leading minus allowed), a column on at least one
  side of each comparison (column to column between two numbers or two texts: `width > height`);
- a number must fit its column's type (size, points: int64; sample_rate, width, height: int32; duration:
  a finite float64), a date mtime's int64 nanoseconds (MTIME_RANGE): else a one-line refusal;
- `mtime` compares with ISO dates or date-times ('2026-01-01', '2026-01-01T08:30', '...+02:00'); without
  a zone they are the searching machine's local time, as `ls -l` shows it;
- tags: `tag = 'bird'`, `tag != 'bird'`, `tag IN ('bird', 'frog')` (any of them), `'bird' IN tags`;
  stored as a list<string> column and compiled to DataFusion's array_has / array_has_any;
- `ext` literals are normalised (`'.WAV'` is `'wav'`); `modality` is the table's own ('audio', ...).
Nothing else parses: no functions, no subqueries, no semicolons, no unknown names. The parsed tree is
rendered back to SQL by this package (names mapped to table columns, strings re-quoted, numbers
re-printed), so the predicate LanceDB receives never holds user text outside a quoted literal.

One job a module, data flowing one way:
- terms.py: the columns users see (COLUMNS), the parsed tree's nodes, the one-line refusal, dates (to_ns);
- checks.py: a parsed predicate's types and literals checked against its column (ranges of int32/int64);
- parse.py: text -> checked tree (parse_where);
- sql.py: tree -> the SQL predicate of one table (render), and the columns a tree reads (columns_used);
- search_filters.py: SearchFilters, the command line's and the API's filters compiled into the language.
Running a filter against an index (LanceDB row ids, FAISS selectors) is avsearch.search.selection's job.
This package's public names are the ones below, importable from `avsearch.search.filters`.
"""

from avsearch.search.filters.parse import parse_where
from avsearch.search.filters.search_filters import SearchFilters
from avsearch.search.filters.sql import columns_used, render
from avsearch.search.filters.terms import COLUMNS, NUMBER, TAGS, TEXT, TIME, Column, Lit, Node, Ref, to_ns

__all__ = [
    "COLUMNS",
    "NUMBER",
    "TAGS",
    "TEXT",
    "TIME",
    "Column",
    "Lit",
    "Node",
    "Ref",
    "SearchFilters",
    "columns_used",
    "parse_where",
    "render",
    "to_ns",
]
