"""Reading index tables with the `lance` dataset API, without importing lancedb.

A query reads its tables and never writes them, and `import lancedb` costs most of a cold query's setup
(its database, remote-client and namespace modules, their pydantic models, asyncio) for nothing the read
path uses: LanceDB's tables are Lance datasets, and its queries are Lance scans. So MediaStore reads
through `TableReader` (a Lance dataset at one version, with the part of LanceDB's query API MediaStore
uses: `search().where().select().with_row_id().limit().to_arrow()`) and imports lancedb only to write
(store/tables.py).

`import lance` imports pyarrow.dataset, whose module body builds one scalar; pyarrow then asks its pandas
shim whether pandas is installed, and the shim imports pandas to find out (0.25 s and 30 MB of a cold
query, which never makes a DataFrame). `import_lance` imports pyarrow.dataset with pandas out of sight, so
the shim records "no pandas" for that one question; it asks again (and imports pandas) the first time
anything converts to or from pandas (`to_pandas`, `from_pandas`: their import is not optional), so those
work as before. A process that imported pandas already is left alone.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from importlib.abc import MetaPathFinder
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from lance import LanceDataset


class _PandasHidden(MetaPathFinder):
    """An import finder under which `import pandas` fails as if it were not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name} is not needed to read tables", name=name)


def import_lance() -> Any:
    """The `lance` module, imported without pandas where nothing has imported pandas yet."""
    if "lance" not in sys.modules and "pyarrow.dataset" not in sys.modules and "pandas" not in sys.modules:
        hidden = _PandasHidden()
        sys.meta_path.insert(0, hidden)
        try:
            import pyarrow.dataset  # noqa: F401  (the import that would ask for pandas)
        finally:
            sys.meta_path.remove(hidden)
    import lance

    return lance


def open_dataset(uri: str, version: int | None = None, storage_options: Mapping[str, str] | None = None) -> Any:
    """The Lance dataset at `uri` (its latest version, or `version`)."""
    return import_lance().dataset(uri, version=version, storage_options=dict(storage_options or {}) or None)


class TableReader:
    """One table at one version, read-only (a Lance dataset pinned to its version: safe to share between
    threads). `search()` starts a scan as LanceDB's `Table.search()` does for a query without a vector."""

    def __init__(self, dataset: LanceDataset) -> None:
        self.dataset = dataset
        self.version = int(dataset.version)

    @property
    def schema(self) -> pa.Schema:
        return self.dataset.schema

    def count_rows(self, filter: str | None = None) -> int:  # noqa: A002  (LanceDB's name)
        return int(self.dataset.count_rows(filter=filter))

    def to_lance(self) -> LanceDataset:
        return self.dataset

    def at(self, version: int) -> TableReader:
        """The same table as of `version` (this reader when it is that version already)."""
        return self if version == self.version else TableReader(self.dataset.checkout_version(version))

    def latest(self) -> TableReader:
        """The table as of its newest commit (another process may have written since this was opened)."""
        return self.at(int(self.dataset.latest_version))

    def search(self) -> Scan:
        return Scan(self.dataset)


class Scan:
    """A scan of a pinned dataset: filter, columns, row ids; `limit(None)` (or none) reads every row."""

    def __init__(self, dataset: LanceDataset) -> None:
        self._dataset = dataset
        self._where: str | None = None
        self._columns: list[str] | None = None
        self._row_id = False
        self._limit: int | None = None

    def where(self, predicate: str) -> Scan:
        self._where = predicate
        return self

    def select(self, columns: list[str]) -> Scan:
        self._columns = list(columns)
        return self

    def with_row_id(self, on: bool = True) -> Scan:
        self._row_id = on
        return self

    def limit(self, n: int | None) -> Scan:
        self._limit = n
        return self

    def to_arrow(self) -> pa.Table:
        return self._dataset.to_table(
            columns=self._columns, filter=self._where, limit=self._limit, with_row_id=self._row_id
        )
