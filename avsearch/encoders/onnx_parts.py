"""What an ONNX tower family (onnx_clip, onnx_clap, onnx_ulip) and the shared export code
(onnx_towers) both name: the export's file names, the description of one graph, the options that shape an
encoder's vectors. Its own module so that the families need not import onnx_towers, which loads them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
    # more dynamic axes than the batch's: input name -> {axis: name} (e.g. the tokens up to the last one used)
    axes: dict[str, dict[int, str]] = field(default_factory=dict)
    # more samples the graph is checked on (shapes other than the traced one, for the dynamic axes)
    more: tuple[Any, ...] = ()

    def inputs(self, samples: Any = None) -> tuple[np.ndarray, ...]:
        """The graph's inputs for `samples` (default: the samples it is traced with)."""
        samples = self.samples if samples is None else samples
        made = self.feed(samples) if self.feed else samples
        return made if isinstance(made, tuple) else (made,)


def spec_options(spec: Any) -> dict[str, Any]:
    """An encoder's options that shape its vectors (batch sizes do not)."""
    return {k: v for k, v in spec.options.items() if not k.startswith("batch")}
