"""Build laion_clap's CLAP model and RoBERTa tokenizer from local files, with no hub access.

What laion_clap 1.1.7 does and how this module avoids the network:
- `import laion_clap` runs hook.py -> training/data.py, which calls Bert/Roberta/BartTokenizer
  .from_pretrained(<hub name>) at import time. We never import the `laion_clap` package itself; we
  import its model code, `clap_module` (the package folder is put on sys.path, exactly as
  laion_clap/__init__.py does), whose import touches no hub. Only the submodules the model needs are
  imported (clap_module.factory and its imports), not clap_module/__init__.py's re-exports of the
  training code (avsearch.encoders.upstream says how).
- `clap_module.model.CLAP.__init__` calls RobertaModel.from_pretrained('roberta-base'), i.e. downloads
  the roberta-base weights only to overwrite them with the text_branch.* tensors of the CLAP checkpoint.
  While the model is built we give `clap_module.model` a RobertaModel whose from_pretrained() builds
  the same architecture from the local roberta-base config.json (random init); the checkpoint then
  fills every weight. The rest of the construction is laion_clap's own `create_model`. When the text
  tower is not asked for (an audio query), RoBERTa is built without its random init (125M parameters
  for roberta-base) and dropped before the checkpoint is loaded; without the audio tower (a text
  query), HTSAT is not built at all. Only the kept towers' tensors load.
- The tokenizer is RobertaTokenizer from the local vocab.json + merges.txt.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pickle
import sys
import threading
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from avsearch.checkpoints import loading, refusal
from avsearch.encoders.upstream import KnownWarning, quiet, submodule
from avsearch.errors import ConfigError, IncompatibleError
from avsearch.modalities import AUDIO, TEXT

log = logging.getLogger(__name__)
_build_lock = threading.Lock()

# laion_clap's timm_model.py imports timm's layers from their pre-2023 path, which timm still serves.
TIMM_OLD_PATH = KnownWarning(
    r"Importing from timm\.models\.layers is deprecated", FutureWarning, r"timm\.models\.layers$"
)
# HTSAT's window attention calls torch.meshgrid without indexing= (the default it relies on is kept).
MESHGRID_INDEXING = KnownWarning(r"torch\.meshgrid: in an upcoming release", UserWarning, r"torch\.functional$")


def _on_path() -> None:
    """Put laion_clap's folder on sys.path, as laion_clap/__init__.py does (minus importing hook.py)."""
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or spec.origin is None:
        raise ConfigError("laion_clap is not installed (pip install laion_clap==1.1.7)")
    folder = str(Path(spec.origin).parent)
    if folder not in sys.path:
        sys.path.append(folder)


def clap_submodule(name: str) -> ModuleType:
    """`clap_module.<name>` without laion_clap/hook.py and without clap_module/__init__.py's re-exports."""
    if "clap_module" not in sys.modules:
        _on_path()
    with quiet(TIMM_OLD_PATH):
        return submodule("clap_module", name)


def clap_module() -> ModuleType:
    """laion_clap's whole `clap_module` package (its names load on first use), without hook.py."""
    clap_submodule("factory")
    return sys.modules["clap_module"]


@contextlib.contextmanager
def _local_roberta(config_path: Path, towers: Sequence[str] = (AUDIO, TEXT)) -> Iterator[None]:
    """Within the block, clap_module.model builds RoBERTa from `config_path` instead of the hub, and
    builds only what the `towers` asked for need:
    - without TEXT: RoBERTa's architecture without its random initialisation (uninitialised storage,
      which the allocator does not commit until written; the tower is dropped before loading);
    - without AUDIO: no HTSAT at all (create_htsat_model gives None; nothing else in CLAP.__init__ uses
      it). Building it costs ~1 s: random init and torchlibrosa's mel filters, which import librosa,
      scipy.signal and numba.
    """
    from transformers import RobertaConfig, RobertaModel

    model_module = clap_submodule("model")

    class _LocalRoberta(RobertaModel):
        @classmethod
        def from_pretrained(cls, *_args: Any, **_kwargs: Any) -> RobertaModel:  # type: ignore[override]
            # Architecture only: the CLAP checkpoint holds the fine-tuned text_branch weights.
            config = RobertaConfig.from_json_file(str(config_path))
            if TEXT in towers:
                return RobertaModel(config)
            with torch.device("meta"):
                return RobertaModel(config).to_empty(device="cpu")

    def no_audio_tower(*_args: Any, **_kwargs: Any) -> None:
        return None

    original = model_module.RobertaModel, model_module.create_htsat_model
    with _build_lock:
        model_module.RobertaModel = _LocalRoberta
        if AUDIO not in towers:
            model_module.create_htsat_model = no_audio_tower
        try:
            yield
        finally:
            model_module.RobertaModel, model_module.create_htsat_model = original


TRUST_ENV = "AVSEARCH_TRUST_CHECKPOINTS"  # "1": allow a full (unsafe) unpickle of a CLAP checkpoint


def _numpy_safe_globals() -> list[Any]:
    """numpy objects that training checkpoints often hold (scalars in logged metrics): data, not code."""
    import numpy as np
    from numpy.core.multiarray import scalar  # numpy<2 path, as pinned by laion_clap

    return [scalar, np.dtype, *{type(np.dtype(t)) for t in ("f4", "f8", "i8", "i4", "b")}]


def load_checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    """The model state dict of a CLAP training checkpoint ({'state_dict': ...}, 'module.' prefixes).

    Read with weights_only=True (plus numpy scalars and dtypes); nothing else is unpickled unless the
    user sets AVSEARCH_TRUST_CHECKPOINTS=1 for a file they trust. A zip-format file (torch.save since
    1.6) is memory-mapped: tensors nobody loads (a dropped tower, optimizer state) are never read.
    """
    mmap = zipfile.is_zipfile(path)  # legacy (pre-1.6) files cannot be mapped
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()), loading():
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if os.environ.get(TRUST_ENV) != "1":
            raise refusal(path, exc, f" (for a file you trust: {TRUST_ENV}=1)") from None
        log.warning("%s: loading fully (unsafe unpickle) because %s=1", path, TRUST_ENV)
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except (RuntimeError, EOFError, OSError) as exc:
        raise IncompatibleError(f"{path}: unreadable CLAP checkpoint ({exc})") from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state:
        raise IncompatibleError(f"{path}: not a CLAP checkpoint (no state_dict)")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


# The sub-modules of laion_clap's CLAP that each tower owns; the *_transform MLPs serve training only.
TOWER_MODULES = {AUDIO: ("audio_branch", "audio_projection"), TEXT: ("text_branch", "text_projection")}
TRAINING_ONLY = ("audio_transform", "text_transform")


def build_clap(
    checkpoint: Path,
    roberta_config: Path,
    options: dict[str, Any],
    towers: Sequence[str] = (AUDIO, TEXT),
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """laion_clap CLAP (fusion HTSAT + RoBERTa) with `checkpoint` loaded, eval mode, on CPU float32.

    Only the `towers` asked for are kept (the others are None) and loaded; every weight of a kept
    tower must be in the checkpoint. Returns (model, model_cfg) where model_cfg["audio_cfg"] is the
    audio front-end configuration.
    """
    factory = clap_submodule("factory")
    with _local_roberta(roberta_config, towers), quiet(MESHGRID_INDEXING):
        model, model_cfg = factory.create_model(
            options["amodel"],
            options["tmodel"],
            precision="fp32",
            device=torch.device("cpu"),
            enable_fusion=True,
            fusion_type=options["fusion_type"],
        )
    dropped = {name for tower, names in TOWER_MODULES.items() if tower not in towers for name in names}
    dropped.update(TRAINING_ONLY)
    for name in dropped:
        setattr(model, name, None)
    state = load_checkpoint_state(checkpoint)
    state = {k: v for k, v in state.items() if k.split(".", 1)[0] not in dropped}
    own = model.state_dict()
    # Checkpoints saved with transformers < 4.31 hold this buffer, which newer RoBERTa no longer has.
    for key in ("text_branch.embeddings.position_ids",):
        if key in state and key not in own:
            del state[key]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise IncompatibleError(f"{checkpoint}: does not fit the CLAP fusion model ({' '.join(first)})") from exc
    return model.eval(), model_cfg


def load_tokenizer(vocab_json: Path) -> Any:
    """RobertaTokenizer from the folder holding roberta-base's vocab.json and merges.txt."""
    from transformers import RobertaTokenizer

    folder = vocab_json.parent
    if not (folder / "merges.txt").is_file():
        raise ConfigError(f"{folder}: vocab.json found but merges.txt missing beside it")
    return RobertaTokenizer.from_pretrained(str(folder), local_files_only=True)
