"""Query towers on ONNX Runtime: a cold `avsearch query` that imports no torch.

Each tower is exported once from the loaded torch model (where torch is already loaded: the first query
that needs it, on CPU) into avsearch's cache, under a name made of the encoder's identity (weights and
preprocessing options), the tower and this module's export version; later queries run the exported
graph with onnxruntime and make their inputs in numpy, so neither torch nor the upstream model code is
imported.

Every export is checked before it is used: the torch encoder and the exported graph (with the query
path's numpy inputs) run on the same fixed samples, and an export whose vectors fall below cosine 0.9999
of torch's is kept aside (`*.unfaithful`) and that tower stays on torch.

Only CPU queries use it (with a GPU, torch runs the towers); `AVSEARCH_ONNX=0` turns it off. The towers
come in families, one module each (this module holds what they share: names, export, check):
- encoders/onnx_clip.py: CLIP ViT-B/32 text and image;
- encoders/onnx_clap.py: CLAP's text tower (RoBERTa + projection) and audio tower (HTSAT-tiny fusion, two
  graphs: clips up to 10 s and longer ones), its log-mel front end in numpy;
- encoders/onnx_ulip.py: ULIP-2's PointBERT, its farthest-point sampling and kNN grouping in numpy.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from avsearch.encoders.onnx_parts import FINGERPRINT, GRAPH, Export
from avsearch.encoders.onnx_session import normalized, run, session
from avsearch.errors import ConfigError

log = logging.getLogger(__name__)

ENV = "AVSEARCH_ONNX"  # "0": torch only
EXPORT_VERSION = 1  # part of every export's name: a change here re-exports
OPSET = 17
MIN_COSINE = 0.9999  # an export below this (any sample, against torch) is not used
CLIP_FACTORY = "avsearch.encoders.clip:load_clip_encoder"
CLAP_FACTORY = "avsearch.encoders.clap:load_clap_encoder"
ULIP_FACTORY = "avsearch.encoders.ulip:load_ulip_encoder"
# encoder factory -> the module of its family (query side without torch; export side with it)
FAMILIES = {
    CLIP_FACTORY: "avsearch.encoders.onnx_clip",
    CLAP_FACTORY: "avsearch.encoders.onnx_clap",
    ULIP_FACTORY: "avsearch.encoders.onnx_ulip",
}


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def on_cpu(device: object) -> bool:
    """Whether the towers will run on the CPU, decided without importing torch: a device named "cpu", or
    none named and no NVIDIA driver on this machine (torch would find no CUDA device)."""
    if device is not None and not isinstance(device, str):
        return str(device) == "cpu"
    if device is None:
        from avsearch.settings import load_settings

        device = load_settings().device
    if device is None:
        return not Path("/proc/driver/nvidia").exists()
    return device == "cpu"


def cache_dir() -> Path:
    from avsearch.settings import load_settings

    return load_settings().cache_dir / "onnx"


def family(spec: Any) -> ModuleType | None:
    name = FAMILIES.get(spec.factory)
    return importlib.import_module(name) if name else None


def clip_fingerprint(spec: Any, weights_dir: Path | str | None) -> tuple[str, Path]:
    """ClipEncoder.fingerprint() and the weights file, without loading the model."""
    from avsearch.encoders import onnx_clip

    return onnx_clip.fingerprint(spec, weights_dir)


def clap_key(spec: Any, weights_dir: Path | str | None) -> tuple[str, dict[str, Path]]:
    """The name of CLAP's exports (made without loading it) and the files it reads, by key."""
    from avsearch.encoders import onnx_clap

    return onnx_clap.paths_key(spec, weights_dir)


def export_path(fingerprint: str, tower: str, revision: int = 0) -> Path:
    """The folder holding the export of `tower` of the encoder with this fingerprint (or export key);
    `revision`: the family's revision of that tower's graph (its REVISIONS; 0 leaves the name as it was)."""
    name = fingerprint.partition(":")[0]
    made = f"{fingerprint}|{tower}|{EXPORT_VERSION}|{OPSET}" + (f"|{revision}" if revision else "")
    key = hashlib.sha256(made.encode()).hexdigest()[:16]
    return cache_dir() / f"{name}.{tower}.{key}"


def supported(spec: Any, wanted: Sequence[str]) -> bool:
    fam = family(spec)
    if fam is None or len(wanted) != 1 or wanted[0] not in fam.TOWERS:
        return False
    return getattr(fam, "supports", lambda _s, _t: True)(spec, wanted[0])


def _export_folder(spec: Any, tower: str, weights_dir: Path | str | None) -> Path:
    fam = family(spec)
    return export_path(fam.key(spec, weights_dir), tower, getattr(fam, "REVISIONS", {}).get(tower, 0))


# -- the query path (no torch) -----------------------------------------------------------------------------


def load_onnx_encoder(spec: Any, wanted: tuple[str, ...], weights_dir: Path | str | None, device: object) -> Any:
    """The ONNX Runtime encoder for this tower when one was exported for these very weights; else None."""
    if not (enabled() and supported(spec, wanted) and on_cpu(device)):
        return None
    folder = _export_folder(spec, wanted[0], weights_dir)
    if not (folder / GRAPH).is_file() or not (folder / FINGERPRINT).is_file():
        return None
    return family(spec).load(spec, wanted[0], weights_dir, folder)


def __getattr__(name: str) -> Any:
    """Names that lived here before the families had modules of their own."""
    if name in ("ClipNumpyPreparer", "OnnxClipEncoder"):
        from avsearch.encoders import onnx_clip

        return getattr(onnx_clip, name)
    if name in ("OnnxClapTextEncoder", "OnnxClapAudioEncoder"):
        from avsearch.encoders import onnx_clap

        return getattr(onnx_clap, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- export (torch is loaded) -------------------------------------------------------------------------------


def _encoder_family(encoder: Any) -> ModuleType:
    """The family of a loaded torch encoder: by its spec, else by the module its class lives in (that of
    its registry factory; looking the spec up in the registry would import it back: a circle)."""
    spec = getattr(encoder, "_spec", None)
    if spec is not None:
        fam = family(spec)
    else:
        module = type(encoder).__module__
        name = next((f for factory, f in FAMILIES.items() if factory.partition(":")[0] == module), None)
        fam = importlib.import_module(name) if name else None
    if fam is None:
        raise ConfigError(f"{encoder.name} has no ONNX export")
    return fam


def torch_forward(encoder: Any, tower: str, inputs: Any) -> np.ndarray:
    """The torch encoder's normalised vectors for the samples the check runs on (its family's form)."""
    return _encoder_family(encoder).torch_forward(encoder, tower, inputs)


def onnx_forward(graph: Path, inputs: Any) -> np.ndarray:
    """The graph's vectors (normalised) for one input array, or a tuple of them in the graph's input order."""
    return normalized(run(session(graph), inputs if isinstance(inputs, tuple) else (inputs,)))


def _export_graph(part: Export, path: Path) -> None:
    """Trace `part.module` into `path`, its weights in one file beside the graph (ORT maps it instead of
    parsing them out of the protobuf)."""
    import warnings

    import onnx
    import torch

    example = tuple(torch.from_numpy(a[:2] if part.batch else a[:1]) for a in part.inputs())
    traced = path.with_suffix(".traced")
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        axes = {n: {0: "batch"} for n in (*part.names, "embedding")} if part.batch else {}
        for name, more in part.axes.items():
            axes[name] = {**axes.get(name, {}), **more}
        torch.onnx.export(
            part.module,
            example,
            str(traced),
            dynamo=False,
            input_names=list(part.names),
            output_names=["embedding"],
            dynamic_axes=axes or None,
            opset_version=OPSET,
            do_constant_folding=True,
        )
    model = onnx.load(str(traced))
    onnx.save_model(model, str(path), save_as_external_data=True, location=f"{path.name}.data", size_threshold=1024)
    del model
    traced.unlink()


def export_tower(encoder: Any, tower: str, path: Path) -> float:
    """Export `tower` of a loaded torch encoder into the folder `path` (made whole or not at all) and check
    it; returns the lowest cosine between its vectors and torch's on the family's samples. Below
    MIN_COSINE the folder is kept as `path.unfaithful` (not tried again) and ConfigError says so."""
    import shutil
    import tempfile

    import torch

    fam = _encoder_family(encoder)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent))
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # its fused attention op has no ONNX form
    try:
        cosine = 1.0
        for part in fam.exports(encoder, tower):
            _export_graph(part, folder / part.file)
            for samples in (part.samples, *part.more):
                got = onnx_forward(folder / part.file, part.inputs(samples))
                want = torch_forward(encoder, tower, samples)
                cosine = min(cosine, float(np.min(np.sum(got * want, axis=1))))
        if cosine < MIN_COSINE:
            shutil.rmtree(path.with_name(path.name + ".unfaithful"), ignore_errors=True)
            os.replace(folder, path.with_name(path.name + ".unfaithful"))
            raise ConfigError(
                f"the ONNX export of {encoder.name}'s {tower} tower is not faithful (cosine {cosine:.6f})"
            )
        for name, text in fam.extras(encoder, tower).items():
            (folder / name).write_text(text)
        os.replace(folder, path)
        return cosine
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        shutil.rmtree(folder, ignore_errors=True)


def export_after_load(encoder: Any, spec: Any, wanted: tuple[str, ...], weights_dir: Path | str | None = None) -> None:
    """After a torch load on the query path: export the tower for the next queries, once. Failures are
    logged (the query goes on with torch) and an unfaithful export is not tried again."""
    if not (enabled() and supported(spec, wanted)) or getattr(encoder, "device", None) is None:
        return
    if encoder.device.type != "cpu":
        return
    path = _export_folder(spec, wanted[0], weights_dir)
    if (path / GRAPH).is_file() or path.with_name(path.name + ".unfaithful").exists():
        return
    try:
        cosine = export_tower(encoder, wanted[0], path)
        log.info("%s %s tower exported to %s (cosine %.6f against torch)", spec.name, wanted[0], path, cosine)
    except Exception as exc:  # the export is an optimisation: the query goes on with torch
        log.warning("%s %s tower: no ONNX export (%s); it runs on torch", spec.name, wanted[0], exc)
