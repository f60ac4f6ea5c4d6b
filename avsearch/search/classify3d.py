"""Zero-shot 3D classification through a ULIP-CLIP bridge (C-MCR section 4.2).

point cloud -> ULIP-2 PointBERT (L2-normalised) -> bridge.project("ulip")
label       -> prompts -> CLIP text encoder -> prompt ensemble (see Ensemble) -> shared space, unit rows
score       =  cosine between the two; labels ranked by score.

The CLIP text embeddings of the prompts are cached on disk per (CLIP fingerprint, prompt), because a
64-prompt ensemble over 40 labels is 2,560 text forwards: minutes on a CPU, paid once.
"""

from __future__ import annotations

import hashlib
import logging
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from avsearch.atomic import atomic_path
from avsearch.bridge.model import Bridge
from avsearch.encoders.base import Encoder
from avsearch.errors import ConfigError, IncompatibleError, InputError
from avsearch.modalities import POINTCLOUD, TEXT
from avsearch.settings import configs_dir, load_settings

logger = logging.getLogger(__name__)

CLIP_ENCODER = "clip-vit-b-32-openai"
ULIP_ENCODER = "ulip2-pointbert"
RELEASED_BRIDGE = "ulip_clip.pt"  # the released C-MCR 3D-image projectors
BUILTIN_LABELS = ("modelnet40",)


# Where a label's prompts are averaged. "native": the unit CLIP text embeddings are averaged over the
# templates, re-normalised and projected once (CLIP's and ULIP's zero-shot protocol). "shared": each
# prompt is projected and the unit projections are averaged and re-normalised. Native is the default:
# averaging before the non-linear head cancels each template's own style, which after the head no
# longer cancels; on a trained synthetic 3D bridge it gave +7.6 top-1 points with table-6 heads and
# +1.1 with the released one-layer head (benchmarks/classify3d.py, 3 seeds each; README "3D shapes").
Ensemble = Literal["native", "shared"]
DEFAULT_ENSEMBLE: Ensemble = "native"


@dataclass(frozen=True)
class PromptSettings:
    """configs/prompts_3d.toml: the templates ('{}' = label) and where their embeddings are averaged."""

    templates: tuple[str, ...]
    ensemble: Ensemble = DEFAULT_ENSEMBLE


def prompt_cache_dir() -> Path:
    return load_settings().cache_dir / "prompt_embeddings"


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # cosine similarity in the bridge's shared space, in [-1, 1]


@dataclass(frozen=True)
class FileResult:
    path: str
    top: tuple[Prediction, ...]  # best first


def load_labels(spec: str | Path = "modelnet40") -> list[str]:
    """A built-in label set by name ("modelnet40") or a text file with one label per line ('#' comments)."""
    if str(spec) in BUILTIN_LABELS:
        path = configs_dir() / "labels" / f"{spec}.txt"
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError(f"labels {str(spec)!r}: neither a built-in set ({', '.join(BUILTIN_LABELS)}) nor a file")
    lines = [ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    labels = [ln for ln in lines if ln]
    if len(labels) < 2:
        raise ConfigError(f"{path}: a label file needs at least 2 labels, found {len(labels)}")
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ConfigError(f"{path}: duplicate labels {', '.join(dupes)}")
    return labels


def load_prompts(path: Path | None = None) -> PromptSettings:
    """Prompt settings from configs/prompts_3d.toml or `path` (a file without 'ensemble' gets the default)."""
    path = path or configs_dir() / "prompts_3d.toml"
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read prompt templates ({exc})") from exc
    unknown = sorted(set(data) - {"templates", "ensemble"})
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(unknown)} (only 'templates' and 'ensemble' are read)")
    templates = data.get("templates")
    if not templates or not all(isinstance(t, str) and t.count("{}") == 1 for t in templates):
        raise ConfigError(f"{path}: 'templates' must be a non-empty list of strings with one '{{}}' each")
    ensemble = data.get("ensemble", DEFAULT_ENSEMBLE)
    if ensemble not in get_args(Ensemble):
        raise ConfigError(f"{path}: 'ensemble' must be one of {', '.join(get_args(Ensemble))}, got {ensemble!r}")
    return PromptSettings(tuple(templates), ensemble)


def load_templates(path: Path | None = None) -> list[str]:
    """Prompt templates ('{}' = label) from configs/prompts_3d.toml or `path`."""
    return list(load_prompts(path).templates)


def prompt_text(label: str) -> str:
    """The label as it reads in a prompt (ModelNet folder names use underscores)."""
    return label.replace("_", " ").strip()


def encode_prompts(text_encoder: Encoder, texts: Sequence[str], cache_dir: Path | None) -> np.ndarray:
    """CLIP text embeddings (len(texts), dim), reusing the on-disk cache when one is given."""
    if cache_dir is None:
        return text_encoder.encode_text(list(texts))
    key = hashlib.sha256("\n".join([text_encoder.fingerprint(), *texts]).encode()).hexdigest()[:24]
    path = cache_dir / f"{key}.npy"
    if path.is_file():
        cached = np.load(path, allow_pickle=False)
        if cached.shape == (len(texts), text_encoder.dim):
            return cached
    emb = text_encoder.encode_text(list(texts))
    try:
        with atomic_path(path) as tmp:  # a concurrent reader never sees half a file
            np.save(tmp, emb)
    except OSError as exc:  # a read-only home only costs the speed-up
        logger.warning("prompt cache %s not written: %s", cache_dir, exc)
    return emb


def label_embeddings(
    labels: Sequence[str],
    templates: Sequence[str],
    text_encoder: Encoder,
    bridge: Bridge,
    cache_dir: Path | None = None,
    ensemble: Ensemble = DEFAULT_ENSEMBLE,
) -> np.ndarray:
    """Prompt-ensemble label embeddings in the shared space: (len(labels), out_dim) float32, unit rows.

    The cache holds each prompt's native CLIP embedding, which both ensembles start from, so one key
    (encoder fingerprint and prompts) serves both.
    """
    if ensemble not in get_args(Ensemble):
        raise ConfigError(f"unknown prompt ensemble {ensemble!r}; valid: {', '.join(get_args(Ensemble))}")
    texts = [t.format(prompt_text(label)) for label in labels for t in templates]
    native = encode_prompts(text_encoder, texts, cache_dir).astype(np.float64)
    native /= np.linalg.norm(native, axis=1, keepdims=True)
    if ensemble == "native":
        per_label = native.reshape(len(labels), len(templates), -1).mean(axis=1)
        return bridge.project("clip", per_label, modality="text")  # normalises its input and output
    shared = bridge.project("clip", native, modality="text")
    per_label = shared.reshape(len(labels), len(templates), -1).mean(axis=1)
    return (per_label / np.linalg.norm(per_label, axis=1, keepdims=True)).astype(np.float32)


def check_3d_bridge(bridge: Bridge) -> Bridge:
    """The bridge must connect the ULIP and CLIP spaces."""
    if set(bridge.meta.spaces) != {"clip", "ulip"}:
        raise IncompatibleError(
            f"bridge {bridge.meta.name!r} connects {' and '.join(bridge.meta.spaces)}; "
            "3D classification needs a ULIP-CLIP bridge (e.g. the released ulip_clip.pt)"
        )
    return bridge


class ZeroShot3DClassifier:
    """Ranks labels for point clouds. Label embeddings are computed once, at construction."""

    def __init__(
        self,
        point_encoder: Encoder,
        text_encoder: Encoder,
        bridge: Bridge,
        labels: Sequence[str],
        templates: Sequence[str],
        cache_dir: Path | None = None,
        ensemble: Ensemble = DEFAULT_ENSEMBLE,
    ) -> None:
        self.point_encoder = point_encoder
        self.bridge = check_3d_bridge(bridge)
        self.labels = list(labels)
        self.label_matrix = label_embeddings(self.labels, templates, text_encoder, bridge, cache_dir, ensemble)

    def scores(self, point_embeddings: np.ndarray) -> np.ndarray:
        """Native ULIP embeddings (N, 512) -> cosine scores (N, len(labels)) float32."""
        return self.bridge.project("ulip", point_embeddings, modality="pointcloud") @ self.label_matrix.T

    def score_clouds(self, clouds: np.ndarray) -> np.ndarray:
        """Prepared clouds (N, 8192, 3) -> scores (N, len(labels)) (needs a ULIP encoder's encode_points)."""
        encode_points = getattr(self.point_encoder, "encode_points", None)
        if encode_points is None:
            raise IncompatibleError(f"encoder {self.point_encoder.name!r} cannot encode point arrays")
        return self.scores(encode_points(clouds))

    def classify_files(self, paths: Sequence[Path], k: int = 5) -> list[FileResult]:
        """Point-cloud/mesh files -> the k best labels of each (DecodeError names a bad file)."""
        if k < 1:
            raise InputError(f"-k must be at least 1, got {k}")
        scores = self.scores(self.point_encoder.encode_files(POINTCLOUD, list(paths)))
        return [FileResult(str(p), top_k(row, self.labels, k)) for p, row in zip(paths, scores, strict=True)]


def top_k(row: np.ndarray, labels: Sequence[str], k: int) -> tuple[Prediction, ...]:
    order = np.argsort(-row, kind="stable")[:k]
    return tuple(Prediction(labels[i], float(row[i])) for i in order)


def load_3d_bridge(bridge: str | Path | None = None, weights_dir: Path | str | None = None) -> Bridge:
    """A bridge file (.safetensors from `avsearch train`) or a released ulip_clip.pt; default: the
    released one from the weights folder (or downloaded)."""
    from avsearch.bridge.io import open_bridge
    from avsearch.encoders.weights import resolve_weight

    path = Path(bridge).expanduser() if bridge else resolve_weight(RELEASED_BRIDGE, weights_dir)
    return check_3d_bridge(open_bridge(path))


def load_classifier(
    labels: str | Path | Sequence[str] = "modelnet40",
    bridge: str | Path | None = None,
    weights_dir: Path | str | None = None,
    device: str | None = None,
    templates: Path | None = None,
    cache_dir: Path | None = None,
) -> ZeroShot3DClassifier:
    """Load ULIP-2 (point clouds), CLIP (text) and the ULIP-CLIP bridge and build a classifier.

    templates: a prompts TOML (templates and ensemble; default configs/prompts_3d.toml); cache_dir:
    prompt-embedding cache (default: prompt_embeddings/ under the avsearch cache, $AVSEARCH_CACHE).
    """
    from avsearch.encoders.registry import load_encoder

    names = load_labels(labels) if isinstance(labels, (str, Path)) else list(labels)
    the_bridge = load_3d_bridge(bridge, weights_dir)
    points = load_encoder(ULIP_ENCODER, (POINTCLOUD,), weights_dir, device)
    text = load_encoder(CLIP_ENCODER, (TEXT,), weights_dir, device)
    cache = prompt_cache_dir() if cache_dir is None else cache_dir
    prompts = load_prompts(templates)
    return ZeroShot3DClassifier(points, text, the_bridge, names, prompts.templates, cache, prompts.ensemble)


def classify3d(
    files: Sequence[Path],
    labels: str | Path = "modelnet40",
    k: int = 5,
    bridge: str | Path | None = None,
    weights_dir: Path | str | None = None,
    device: str | None = None,
    templates: Path | None = None,
) -> list[FileResult]:
    """`avsearch classify3d`: the k best labels for each point-cloud or mesh file."""
    if not files:
        raise InputError("no point-cloud file given")
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise InputError(f"{missing[0]}: no such file")
    classifier = load_classifier(labels, bridge, weights_dir, device, templates)
    return classifier.classify_files(list(files), k)
