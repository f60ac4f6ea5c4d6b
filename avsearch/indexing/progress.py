"""How the pipeline reports progress: a small protocol the CLI implements with rich (tests: nothing)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, stage: str, total: int | None) -> None:
        """A stage begins: "scan", "hash", "embed <modality>", "index <name>"; total None = unknown."""

    def advance(self, stage: str, n: int = 1) -> None: ...

    def finish(self, stage: str) -> None: ...


class NoProgress:
    """Reports nothing (library use, tests)."""

    def start(self, stage: str, total: int | None) -> None:
        return None

    def advance(self, stage: str, n: int = 1) -> None:
        return None

    def finish(self, stage: str) -> None:
        return None
