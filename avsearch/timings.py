"""Stage timings of one command, printed to stderr when AVSEARCH_TIMINGS=1 (read by benchmarks/cold_start.py).

Off by default: then a stage costs one environment lookup and prints nothing. On, each stage prints a
start and an end line, so that a run under `python -X importtime` can attribute its imports to stages.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

ENV = "AVSEARCH_TIMINGS"
PREFIX = "avsearch-timing:"  # every line starts with it: `<PREFIX> start|end <stage> [seconds]`

F = TypeVar("F", bound=Callable[..., Any])


def enabled() -> bool:
    return os.environ.get(ENV) == "1"


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as stage `name` (nested stages include each other's time)."""
    if not enabled():
        yield
        return
    print(f"{PREFIX} start {name}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        yield
    finally:
        print(f"{PREFIX} end {name} {time.perf_counter() - start:.4f}", file=sys.stderr, flush=True)


def timed(name: str) -> Callable[[F], F]:
    """Decorator form of stage(): one line on the function that is the stage."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with stage(name):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
