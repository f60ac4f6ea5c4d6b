"""ONNX Runtime sessions for the query towers (encoders/onnx_towers.py), without torch: open an exported
graph, run it on numpy inputs, normalise its rows as the torch encoders do."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def session(path: Path) -> Any:
    """An onnxruntime InferenceSession on the CPU for the graph at `path`, quiet, threads as OMP_NUM_THREADS."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: a query prints nothing but its results
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def normalized(rows: np.ndarray) -> np.ndarray:
    """runtime.run_batched's F.normalize(out.float(), dim=-1), in numpy."""
    rows = rows.astype(np.float32, copy=False)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float32))[:, None]
    return np.ascontiguousarray(rows / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


def run(graph: Any, inputs: Sequence[np.ndarray], batch: int = 64) -> np.ndarray:
    """The graph's first output for `inputs` (arrays in the graph's input order, rows aligned), in batches
    of `batch` rows; one row a run where the graph was exported for a batch of one."""
    names = [i.name for i in graph.get_inputs()]
    if graph.get_inputs()[0].shape[0] == 1:
        batch = 1
    total = len(inputs[0])
    rows = [
        graph.run(None, {n: a[i : i + batch] for n, a in zip(names, inputs, strict=True)})[0]
        for i in range(0, total, batch)
    ]
    return np.concatenate(rows)
