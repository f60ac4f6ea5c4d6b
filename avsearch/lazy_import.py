"""A module imported where it is first used, not where it is named: `faiss = lazy_module("faiss")`.

FAISS is named by every store module, but a cold command that never opens a FAISS index (`avsearch
info`, a search over a flat index on the CPU: store/exact.py) need not pay for it: with its GPU build
`import faiss` takes 0.2 s and 170 MB (CUDA libraries), and another 80 MB at interpreter exit.
The first attribute read (`faiss.read_index`) imports the module the ordinary way (under the import
lock, seen by `python -X importtime`); later reads find it in sys.modules.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module `name` until an attribute is read from it."""

    def __init__(self, name: str) -> None:
        self._lazy_name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._lazy_name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


def lazy_module(name: str) -> Any:
    """The module `name`, imported on first use."""
    return LazyModule(name)
