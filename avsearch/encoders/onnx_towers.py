"""Query towers on ONNX Runtime: a cold `avsearch query` that imports no torch.

Each tower is exported once from the loaded torch model (where torch is already loaded: the first query
that needs it, on CPU) into avsearch's cache, under a name made of the encoder's fingerprint (weights
identity and preprocessing options), the tower and this module's export version; later queries run the
exported graph with onnxruntime and make their inputs in numpy (encoders/clip_inputs.py), so neither
torch nor the upstream model code is imported.

Every export is checked before it is used: the torch forward and the exported graph run on the same
inputs, and an export whose vectors fall below cosine 0.9999 of torch's is kept aside (`*.unfaithful`)
and that tower stays on torch.

Only CPU queries use it (with a GPU, torch runs the towers); `AVSEARCH_ONNX=0` turns it off. Towers
exported: CLIP ViT-B/32 text and image, CLAP's text tower (RoBERTa + projection; tokens by the
`tokenizers` library from the same vocab.json + merges.txt, equal to transformers' RobertaTokenizer).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.errors import ConfigError
from avsearch.modalities import IMAGE, TEXT

log = logging.getLogger(__name__)

ENV = "AVSEARCH_ONNX"  # "0": torch only
EXPORT_VERSION = 1  # part of every export's name: a change here re-exports
OPSET = 17
MIN_COSINE = 0.9999  # an export below this (any test row, against torch) is not used
CLIP_FACTORY = "avsearch.encoders.clip:load_clip_encoder"
CLAP_FACTORY = "avsearch.encoders.clap:load_clap_encoder"
# encoder factory -> towers that can run on ONNX Runtime
TOWERS = {CLIP_FACTORY: (TEXT, IMAGE), CLAP_FACTORY: (TEXT,)}
FINGERPRINT = "fingerprint.txt"  # in a CLAP export's folder: the torch encoder's fingerprint()


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


def _options(spec: Any) -> dict[str, Any]:
    return {k: v for k, v in spec.options.items() if not k.startswith("batch")}


def clip_fingerprint(spec: Any, weights_dir: Path | str | None) -> tuple[str, Path]:
    """ClipEncoder.fingerprint() and the weights file, without loading the model."""
    from avsearch.encoders.identity import fingerprint
    from avsearch.encoders.weights import find_file, resolve_weight

    (file_key,) = spec.files
    path = resolve_weight(find_file(file_key).name, weights_dir)
    return fingerprint(spec.name, [path], _options(spec)), path


def clap_key(spec: Any, weights_dir: Path | str | None) -> tuple[str, dict[str, Path]]:
    """A name for CLAP's exports made without loading it (its fingerprint depends on code-side settings,
    so the export keeps the real one beside it): identities of every file it reads + its options; and
    those files by key."""
    from avsearch import __version__
    from avsearch.encoders.identity import fingerprint
    from avsearch.encoders.weights import find_file, resolve_weight

    paths = {key: resolve_weight(find_file(key).name, weights_dir) for key in spec.files}
    return fingerprint(spec.name, list(paths.values()), _options(spec) | {"avsearch": __version__}), paths


GRAPH = "model.onnx"  # in an export's folder, beside its weights (model.onnx.data, memory-mapped by ORT)


def export_path(fingerprint: str, tower: str) -> Path:
    """The folder holding the export of `tower` of the encoder with this fingerprint."""
    name = fingerprint.partition(":")[0]
    key = hashlib.sha256(f"{fingerprint}|{tower}|{EXPORT_VERSION}|{OPSET}".encode()).hexdigest()[:16]
    return cache_dir() / f"{name}.{tower}.{key}"


def supported(spec: Any, wanted: Sequence[str]) -> bool:
    return len(wanted) == 1 and wanted[0] in TOWERS.get(spec.factory, ())


# -- the query path (no torch) -----------------------------------------------------------------------------


def load_onnx_encoder(spec: Any, wanted: tuple[str, ...], weights_dir: Path | str | None, device: object) -> Any:
    """The ONNX Runtime encoder for this tower when one was exported for these very weights; else None."""
    if not (enabled() and supported(spec, wanted) and on_cpu(device)):
        return None
    if spec.factory == CLAP_FACTORY:
        key, paths = clap_key(spec, weights_dir)
        folder = export_path(key, TEXT)
        if not (folder / GRAPH).is_file() or not (folder / FINGERPRINT).is_file():
            return None
        return OnnxClapTextEncoder(spec, (folder / FINGERPRINT).read_text().strip(), paths, folder / GRAPH)
    fingerprint, weight_path = clip_fingerprint(spec, weights_dir)
    graph = export_path(fingerprint, wanted[0]) / GRAPH
    if not graph.is_file():
        return None
    return OnnxClipEncoder(spec, wanted, fingerprint, weight_path, graph)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: a query prints nothing but its results
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _normalized(rows: np.ndarray) -> np.ndarray:
    """runtime.run_batched's F.normalize(out.float(), dim=-1), in numpy."""
    rows = rows.astype(np.float32, copy=False)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float32))[:, None]
    return np.ascontiguousarray(rows / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


class ClipNumpyPreparer:
    """ClipImagePreparer without torch: one image file -> (3, size, size) uint8 (picklable, model-free)."""

    def __init__(self, size: int, interpolation: str) -> None:
        self.size, self.interpolation = size, interpolation

    def __call__(self, path: Path) -> np.ndarray:
        from avsearch.encoders.clip_inputs import prepare_image
        from avsearch.media.image import load_image

        return prepare_image(load_image(path), self.size, self.interpolation)


class OnnxClipEncoder:
    """CLIP's text or image tower on ONNX Runtime: ClipEncoder's encode_text / encode_files, same vectors."""

    runtime = "onnx"

    def __init__(self, spec: Any, modalities: tuple[str, ...], fingerprint: str, weight_path: Path, graph: Path):
        self.name, self.space, self.dim = spec.name, spec.space, spec.dim
        self.modalities = modalities
        self._spec = spec
        self._fingerprint = fingerprint
        self._weight_path = weight_path
        self.graph = graph
        self._model = None  # no torch model (the cold-start probe reads this)
        self._run = _session(graph)
        opts = spec.options
        self._preparer = ClipNumpyPreparer(opts["image_size"], opts["interpolation"])
        self._tokenizer: Any = None
        self.image_batch, self.text_batch = opts["batch_image"], opts["batch_text"]

    def fingerprint(self) -> str:
        return self._fingerprint

    def _require(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ConfigError(f"{self.name} was loaded without its {modality} tower")

    def _forward(self, inputs: np.ndarray, batch: int) -> np.ndarray:
        name = self._run.get_inputs()[0].name
        rows = [self._run.run(None, {name: inputs[i : i + batch]})[0] for i in range(0, len(inputs), batch)]
        return _normalized(np.concatenate(rows)) if rows else np.zeros((0, self.dim), np.float32)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        from avsearch.encoders.clip_inputs import ClipTokenizer
        from avsearch.media.text import check_texts

        self._require(TEXT)
        cleaned = check_texts(texts)
        if not cleaned:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._tokenizer is None:
            self._tokenizer = ClipTokenizer(self._spec.options["context_length"])
        return self._forward(self._tokenizer(list(cleaned)), self.text_batch)

    def preparer(self, modality: str) -> ClipNumpyPreparer:
        if modality != IMAGE:
            raise ConfigError(f"{self.name} encodes image files, not {modality}")
        return self._preparer

    def prepare(self, modality: str, path: Path) -> np.ndarray:
        return self.preparer(modality)(path)

    def encode_prepared(self, modality: str, items: Sequence[Any]) -> np.ndarray:
        from avsearch.encoders.clip_inputs import normalize_pixels

        self._require(IMAGE)
        if not len(items):
            return np.zeros((0, self.dim), dtype=np.float32)
        opts = self._spec.options
        pixels = normalize_pixels([np.asarray(i, dtype=np.uint8) for i in items], opts["mean"], opts["std"])
        return self._forward(pixels, self.image_batch)

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        self._require(IMAGE)
        if len(paths) == 1:
            items = [self.prepare(modality, Path(paths[0]))]
        else:
            with ThreadPoolExecutor(max_workers=4) as pool:  # PIL decodes release the GIL
                items = list(pool.map(lambda p: self.prepare(modality, Path(p)), paths))
        return self.encode_prepared(modality, items)


class OnnxClapTextEncoder:
    """CLAP's text tower (RoBERTa + projection) on ONNX Runtime: ClapEncoder.encode_text's vectors."""

    runtime = "onnx"

    def __init__(self, spec: Any, fingerprint: str, paths: dict[str, Path], graph: Path) -> None:
        from avsearch.encoders.clap_inputs import ClapTokenizer

        self.name, self.space, self.dim = spec.name, spec.space, spec.dim
        self.modalities = (TEXT,)
        self._spec = spec
        self._fingerprint = fingerprint
        self.graph = graph
        self._model = None
        self._run = _session(graph)
        self._tokenizer = ClapTokenizer(paths["roberta-vocab"], paths["roberta-merges"], spec.options["context_length"])
        self.text_batch = spec.options["batch_text"]

    def fingerprint(self) -> str:
        return self._fingerprint

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        raise ConfigError(f"{self.name} was loaded without its {modality} tower")

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        from avsearch.media.text import check_texts

        texts = [texts] if isinstance(texts, str) else list(texts)
        check_texts(texts)  # refuse the whole call before any forward
        rows = []
        for start in range(0, len(texts), self.text_batch):
            ids, mask = self._tokenizer(texts[start : start + self.text_batch])
            rows.append(self._run.run(None, {"input_ids": ids, "attention_mask": mask})[0])
        return _normalized(np.concatenate(rows)) if rows else np.zeros((0, self.dim), np.float32)


# -- export (torch is loaded) -------------------------------------------------------------------------------


def _is_clap(encoder: Any) -> bool:
    return encoder._spec.factory == CLAP_FACTORY


def _clap_module(encoder: Any) -> tuple[Any, Any]:
    import torch

    model = encoder._model

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model.get_text_embedding({"input_ids": input_ids, "attention_mask": attention_mask})

    ids, mask = sample_inputs(encoder, TEXT)
    return Tower().eval(), (torch.from_numpy(ids[:2]), torch.from_numpy(mask[:2]))


def _clip_module(encoder: Any, tower: str) -> tuple[Any, Any]:
    """(torch module whose forward is the tower's un-normalised output, example inputs) for export."""
    import torch

    if _is_clap(encoder):
        return _clap_module(encoder)
    model = encoder._model

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model.encode_text(x) if tower == TEXT else self.model.encode_image(x)

    return Tower().eval(), (torch.from_numpy(sample_inputs(encoder, tower)[:2]),)


def sample_inputs(encoder: Any, tower: str) -> Any:
    """Fixed inputs the export and its check run on: tokens of a few texts (one long enough to be
    truncated), or pixels of a few synthetic pictures (normalised as the encoder normalises them)."""
    from avsearch.encoders.clip_inputs import ClipTokenizer, normalize_pixels

    opts = encoder._spec.options
    texts = ["a dog barking in the rain", "an orchestra tuning up", "x", " ".join(["long words"] * 60)]
    if _is_clap(encoder):
        ids, mask = encoder._tokens(texts)["input_ids"], encoder._tokens(texts)["attention_mask"]
        return ids.numpy().astype(np.int64), mask.numpy().astype(np.int64)
    if tower == TEXT:
        return ClipTokenizer(opts["context_length"])(texts)
    rng = np.random.default_rng(0)
    size = opts["image_size"]
    items = [rng.integers(0, 256, (3, size, size), dtype=np.uint8) for _ in range(3)]
    gradient = np.broadcast_to(np.linspace(0, 255, size, dtype=np.float32).astype(np.uint8), (3, size, size))
    return normalize_pixels([*items, np.ascontiguousarray(gradient)], opts["mean"], opts["std"])


def torch_forward(encoder: Any, tower: str, inputs: Any) -> np.ndarray:
    """The torch encoder's vectors for the same inputs the graph gets (tokens or normalised pixels)."""
    import torch

    with torch.inference_mode():
        if _is_clap(encoder):
            data = {"input_ids": torch.from_numpy(inputs[0]), "attention_mask": torch.from_numpy(inputs[1])}
            out = encoder._model.get_text_embedding(data)
        elif tower == TEXT:
            out = encoder._model.encode_text(torch.from_numpy(inputs).to(encoder.device))
        else:
            out = encoder._model.encode_image(torch.from_numpy(inputs).to(encoder.device, encoder.dtype))
    return _normalized(out.float().cpu().numpy())


def onnx_forward(graph: Path, inputs: Any) -> np.ndarray:
    """The graph's vectors (normalised) for one input array, or a tuple of them in the graph's input order."""
    session = _session(graph)
    arrays = inputs if isinstance(inputs, tuple) else (inputs,)
    feed = {i.name: a for i, a in zip(session.get_inputs(), arrays, strict=True)}
    return _normalized(session.run(None, feed)[0])


def export_tower(encoder: Any, tower: str, path: Path) -> float:
    """Export `tower` of a loaded torch ClipEncoder into the folder `path` (made whole or not at all) and
    check it; returns the lowest cosine between its vectors and torch's on sample_inputs. Below MIN_COSINE
    the folder is kept as `path.unfaithful` (not tried again) and ConfigError says so."""
    import shutil
    import tempfile
    import warnings

    import onnx
    import torch

    module, example = _clip_module(encoder, tower)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent))
    traced = folder / "traced.onnx"
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # its fused attention op has no ONNX form
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
            names = ["input_ids", "attention_mask"] if _is_clap(encoder) else ["input"]
            torch.onnx.export(
                module,
                example,
                str(traced),
                dynamo=False,
                input_names=names,
                output_names=["embedding"],
                dynamic_axes={**{n: {0: "batch"} for n in names}, "embedding": {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
            )
        # weights in one file beside the graph: ORT maps it instead of parsing them out of the protobuf
        graph = folder / GRAPH
        model = onnx.load(str(traced))
        onnx.save_model(model, str(graph), save_as_external_data=True, location=f"{GRAPH}.data", size_threshold=1024)
        del model
        traced.unlink()
        inputs = sample_inputs(encoder, tower)
        cosine = float(np.min(np.sum(onnx_forward(graph, inputs) * torch_forward(encoder, tower, inputs), axis=1)))
        if cosine < MIN_COSINE:
            shutil.rmtree(path.with_name(path.name + ".unfaithful"), ignore_errors=True)
            os.replace(folder, path.with_name(path.name + ".unfaithful"))
            raise ConfigError(
                f"the ONNX export of {encoder.name}'s {tower} tower is not faithful (cosine {cosine:.6f})"
            )
        (folder / FINGERPRINT).write_text(encoder.fingerprint() + "\n")
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
    if spec.factory == CLAP_FACTORY:
        path = export_path(clap_key(spec, weights_dir)[0], wanted[0])
    else:
        path = export_path(encoder.fingerprint(), wanted[0])
    if (path / GRAPH).is_file() or path.with_name(path.name + ".unfaithful").exists():
        return
    try:
        cosine = export_tower(encoder, wanted[0], path)
        log.info("%s %s tower exported to %s (cosine %.6f against torch)", spec.name, wanted[0], path, cosine)
    except Exception as exc:  # the export is an optimisation: the query goes on with torch
        log.warning("%s %s tower: no ONNX export (%s); it runs on torch", spec.name, wanted[0], exc)
