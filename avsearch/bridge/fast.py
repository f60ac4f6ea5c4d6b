"""Bridge projection in numpy: what a query needs of a bridge, without importing torch.

The heads are two small MLPs (Linear, BatchNorm in eval mode, ReLU); a query projects one vector. This
module reads the bridge file's tensors as numpy arrays (safetensors, nothing unpickled) and computes
exactly what `Bridge.project` computes in float32: L2-normalise the input, the head of its space with
the BatchNorm statistics of the input's kind, L2-normalise the output (same results within 1e-6).

A released C-MCR checkpoint (.pt, a torch pickle) is read once with torch (`bridge/io.py`) and kept in
avsearch's cache as a safetensors file named by the SHA-256 of the .pt file's bytes; later opens read
the cache. Its score calibrations stay in the sidecar JSON, read on every open.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from avsearch.bridge.meta import BridgeMeta, read_header_meta, sidecar_calibrations
from avsearch.errors import IncompatibleError, InputError
from avsearch.timings import timed

log = logging.getLogger(__name__)

_EPS = 1e-5  # torch.nn.BatchNorm1d's default, the heads' (bridge/heads.py)
# numpy dtype -> the name torch gives it: bridge/io.py weights_fingerprint hashes str(tensor.dtype)
_TORCH_DTYPE = {
    np.dtype(np.float32): "torch.float32",
    np.dtype(np.float16): "torch.float16",
    np.dtype(np.float64): "torch.float64",
    np.dtype(np.int64): "torch.int64",
    np.dtype(np.int32): "torch.int32",
    np.dtype(np.uint8): "torch.uint8",
    np.dtype(np.bool_): "torch.bool",
}
# head kind -> its blocks in order: (state-dict block name, ReLU after it)
_BLOCKS = {
    "mlp": (("net1", True), ("net2", True)),
    "released_av": (("net1", True), ("net2", False)),
    "released_3d": (("net", True),),
}


def numpy_fingerprint(state: dict[str, np.ndarray]) -> str:
    """bridge/io.py's weights_fingerprint over numpy arrays: the same digest for the same tensors."""
    h = hashlib.sha256()
    for name in sorted(state):
        a = np.asarray(state[name])  # not ascontiguousarray: it makes a 0-d array 1-d
        h.update(f"{name}|{_TORCH_DTYPE[a.dtype]}|{tuple(a.shape)}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _normalize(x: np.ndarray) -> np.ndarray:
    """torch.nn.functional.normalize(x, dim=-1): rows over max(norm, 1e-12)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))[:, None]
    return (x / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)


class NumpyBridge:
    """The query-time half of a Bridge: `meta`, `fingerprint` and `project`, in numpy."""

    def __init__(self, meta: BridgeMeta, state: dict[str, np.ndarray], fingerprint: str) -> None:
        self.meta = meta
        self.fingerprint = fingerprint
        if meta.head.kind not in _BLOCKS:
            raise IncompatibleError(f"bridge {meta.name!r}: unknown head kind {meta.head.kind!r}")
        self._state = {k: np.asarray(v) for k, v in state.items()}

    def _layer(self, space: str, block: str, kind: str) -> tuple[np.ndarray, ...]:
        """(W^T, bias, BatchNorm scale, BatchNorm shift) of one block, for inputs of `kind`."""
        s, p = self._state, f"heads.{space}.{block}"
        suffix = "" if self.meta.head.norm_stats == "shared" else f"_{kind}"
        mean = s[f"{p}.1.running_mean{suffix}"].astype(np.float32)
        var = s[f"{p}.1.running_var{suffix}"].astype(np.float32)
        gamma, beta = s[f"{p}.1.weight"].astype(np.float32), s[f"{p}.1.bias"].astype(np.float32)
        weight, bias = s[f"{p}.0.weight"].astype(np.float32), s[f"{p}.0.bias"].astype(np.float32)
        return weight.T, bias, mean, var, gamma, beta

    def project(self, space: str, x: np.ndarray, *, modality: str, batch_size: int = 65536) -> np.ndarray:
        """Native embeddings (N, dim) of `modality` in `space` -> shared space (N, out_dim), L2-normalised
        (Bridge.project's contract and arithmetic)."""
        side = self.meta.side(space)
        kind = self.meta.input_kind(space, modality)
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != side.dim:
            raise IncompatibleError(f"{space} embeddings must have shape (N, {side.dim}), got {tuple(x.shape)}")
        layers = [(self._layer(space, block, kind), relu) for block, relu in _BLOCKS[self.meta.head.kind]]
        out = np.empty((x.shape[0], self.meta.head.out_dim), dtype=np.float32)
        for start in range(0, x.shape[0], batch_size):
            h = _normalize(np.asarray(x[start : start + batch_size], np.float32))
            for (wt, bias, mean, var, gamma, beta), relu in layers:
                h = h @ wt + bias
                # F.batch_norm in eval mode: (x - mean) * rsqrt(var + eps) * weight + bias
                h = (h - mean) * (np.float32(1) / np.sqrt(var + np.float32(_EPS))) * gamma + beta
                if relu:
                    h = np.maximum(h, np.float32(0))
            out[start : start + h.shape[0]] = _normalize(h)
        return out


def read_bridge_meta(path: str | Path) -> tuple[BridgeMeta, str]:
    """Metadata and fingerprint of a bridge file of either format: a .safetensors file's header (no tensors
    are loaded), or a released .pt's cached conversion (made with torch the first time)."""
    path = Path(path)
    if path.suffix == ".pt":
        bridge = open_fast_bridge(path)
        return bridge.meta, bridge.fingerprint
    return read_header_meta(path)


@timed("load bridge")
def open_fast_bridge(path: str | Path, device: object = None) -> NumpyBridge:
    """A bridge file (.safetensors, or a released .pt through its cached conversion) as a NumpyBridge.

    `device` is accepted for the torch loader's signature and ignored: a query's projection is one
    vector through two small layers."""
    path = Path(path)
    if path.suffix == ".pt":
        return _released(path)
    return _load_safetensors(path)


def _load_safetensors(path: Path) -> NumpyBridge:
    from safetensors import safe_open

    meta, stored_fp = read_header_meta(path)
    with safe_open(str(path), framework="numpy") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    fingerprint = numpy_fingerprint(state)
    if stored_fp and stored_fp != fingerprint:
        raise InputError(f"{path}: fingerprint mismatch (file says {stored_fp}, weights give {fingerprint})")
    _check_layout(path, meta, state)
    return NumpyBridge(meta, state, fingerprint)


def _check_layout(path: Path, meta: BridgeMeta, state: dict[str, np.ndarray]) -> None:
    """The tensors a projection reads are there, with the shapes the metadata says (load_bridge checks
    the whole state dict against the torch module; this is the part a projection depends on)."""
    suffixes = ("",) if meta.head.norm_stats == "shared" else ("_overlap", "_memory")
    for side in meta.sides:
        width = side.dim
        for block, _relu in _BLOCKS.get(meta.head.kind, ()):
            p = f"heads.{side.space}.{block}"
            weight = state.get(f"{p}.0.weight")
            stats = [f"{p}.1.running_{w}{s}" for w in ("mean", "var") for s in suffixes]
            if weight is None or weight.ndim != 2 or weight.shape[1] != width or any(k not in state for k in stats):
                raise InputError(f"{path}: weights do not match the bridge metadata ({p})")
            width = weight.shape[0]


def released_cache_dir() -> Path:
    from avsearch.settings import load_settings

    return load_settings().cache_dir / "bridges"


def _released(path: Path) -> NumpyBridge:
    """A released .pt bridge: its cached safetensors conversion (made with torch on first use)."""
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
    cached = released_cache_dir() / f"{path.stem}-{digest}.safetensors"
    bridge = _load_safetensors(cached) if cached.is_file() else _convert_released(path, cached)
    bridge.meta = replace(bridge.meta, calibrations=sidecar_calibrations(path, bridge.fingerprint))
    return bridge


def _convert_released(path: Path, cached: Path) -> NumpyBridge:
    """Read a released .pt once with torch (weights only) and keep it as a safetensors bridge file (when
    the cache cannot be written, the conversion serves this process only)."""
    from avsearch.bridge.io import import_released, save_bridge

    bridge = import_released(path)  # refuses anything but the released tensors
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp.safetensors")
        save_bridge(bridge, tmp)
        os.replace(tmp, cached)
        log.info("%s: converted for torch-free queries into %s", path, cached)
    except OSError as exc:
        log.info("%s: no cached conversion (%s)", path, exc)
    state = {k: v.detach().cpu().numpy() for k, v in bridge.state_dict().items()}
    return NumpyBridge(bridge.meta, state, bridge.fingerprint)
