"""Running third-party model code (open_clip, laion_clap's clap_module, timm) cheaply and quietly.

submodule(): import one submodule of a package without first running the package's __init__.py.
open_clip's and clap_module's __init__.py only re-export names, but to do so they import every
submodule: training losses (scikit-learn), CoCa, hub upload helpers, zero-shot templates, the CLIP
tokenizer... An encoder needs a few of them; the rest was 1.2 s (clap_module) and 1.5 s (open_clip) of
every cold query. The package is registered from its import spec without executing its __init__.py,
then the submodule is imported the normal way (its own imports, relative ones included, run
unchanged: no upstream code is copied or patched). So that nothing else in the process sees a
half-empty package, the package gets a module __getattr__ (PEP 562): the first time anyone asks it for
a name it does not hold yet (`open_clip.create_model`, `from clap_module import create_model` in
laion_clap's hook.py), its own __init__.py runs, and the package is complete from then on.

quiet(): ignore, within a block, the known warnings that upstream code raises on every normal run and
that a user can do nothing about, each matched by message, category and the module that issues it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

_lock = threading.RLock()


def submodule(package: str, name: str) -> ModuleType:
    """`package.name`, imported without running package/__init__.py (unless it has run already)."""
    with _lock:
        if package not in sys.modules:
            spec = importlib.util.find_spec(package)
            if spec is None or spec.loader is None or spec.submodule_search_locations is None:
                raise ModuleNotFoundError(f"no package named {package!r}", name=package)
            module = importlib.util.module_from_spec(spec)
            module.__getattr__ = _completer(module)  # type: ignore[attr-defined]
            sys.modules[package] = module
        return importlib.import_module(f"{package}.{name}")


def _completer(module: ModuleType) -> Any:
    def __getattr__(attr: str) -> Any:
        with _lock:
            if module.__dict__.get("__getattr__") is __getattr__:
                del module.__dict__["__getattr__"]  # once: from now on the package's own names answer
                module.__spec__.loader.exec_module(module)  # type: ignore[union-attr]
        return getattr(module, attr)

    return __getattr__


@dataclass(frozen=True)
class KnownWarning:
    """One upstream warning: `message` is a regex matched (case-insensitively) at the start of its text,
    `module` one matched at the start of the name of the module that issues it (as warnings.filterwarnings
    does)."""

    message: str
    category: type[Warning]
    module: str


@contextmanager
def quiet(*known: KnownWarning) -> Iterator[None]:
    """Within the block, ignore these warnings (and only these); every other warning is shown as usual."""
    with warnings.catch_warnings():
        for w in known:
            warnings.filterwarnings("ignore", message=w.message, category=w.category, module=w.module)
        yield
