"""What an ONNX tower family (onnx_clip, onnx_clap, onnx_ulip) and the shared export code
(onnx_towers) both name: the export's file names, the description of one graph, the options that shape an
encoder's vectors. Its own module so that the families need not import onnx_towers, which loads them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

GRAPH = "model.onnx"  # in an export's folder, beside its weights (model.onnx.data, memory-mapped by ORT)
FINGERPRINT = "fingerprint.txt"  # in an export's folder: the torch encoder's fingerprint()


@dataclass
class Export:
    """One graph of a tower's export, as its family describes it (torch side)."""

    file: str  # in the export folder; the first graph of a tower is GRAPH
    module: Any  # torch module: forward(*graph inputs) -> the tower's un-normalised vectors
    names: tuple[str, ...]  # the graph's input names
    samples: Any  # what the check runs the torch encoder on (the family's torch_forward takes it)
    feed: Callable[[Any], Any] | None = None  # samples -> the graph's inputs, made as the query path makes them
    batch: bool = True  # a dynamic batch axis; else the graph runs one item at a time

    def inputs(self) -> tuple[np.ndarray, ...]:
        made = self.feed(self.samples) if self.feed else self.samples
        return made if isinstance(made, tuple) else (made,)


def spec_options(spec: Any) -> dict[str, Any]:
    """An encoder's options that shape its vectors (batch sizes do not)."""
    return {k: v for k, v in spec.options.items() if not k.startswith("batch")}
