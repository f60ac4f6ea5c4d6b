"""store/lance_read.py: lance is imported without pandas, and pandas still works afterwards where asked for
(pyarrow's shim asks again the first time anything converts to or from pandas)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from avsearch.store.lance_read import import_lance
import_lance()
print("pandas after import_lance:", "pandas" in sys.modules)
import pyarrow as pa
frame = pa.table({"a": [1, 2]}).to_pandas()
print("to_pandas:", type(frame).__name__, frame["a"].tolist())
print("from_pandas:", pa.Table.from_pandas(frame).column("a").to_pylist())
import pandas as pd
print("array from a Series:", pa.array(pd.Series([1.5, None])).to_pylist())
"""


def test_lance_without_pandas_and_pandas_afterwards() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "pandas after import_lance: False",
        "to_pandas: DataFrame [1, 2]",
        "from_pandas: [1, 2]",
        "array from a Series: [1.5, None]",
    ]
