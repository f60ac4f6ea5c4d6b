"""Test-only: an encoder loader that fails as a node without the weights does (WeightsMissingError),
importable by Ray workers."""

from __future__ import annotations

from typing import Any

from avsearch.errors import WeightsMissingError


class MissingWeightsLoader:
    def __call__(self, name: str, towers: tuple[str, ...]) -> Any:
        raise WeightsMissingError(f"{name}: weights not found in /nowhere on this node")
