"""Build laion_clap's CLAP model and RoBERTa tokenizer from local files, with no hub access.

What laion_clap 1.1.7 does and how this module avoids the network:
- `import laion_clap` runs hook.py -> training/data.py, which calls Bert/Roberta/BartTokenizer
  .from_pretrained(<hub name>) at import time. We never import the `laion_clap` package itself; we
  import its model code, `clap_module` (the package folder is put on sys.path, exactly as
  laion_clap/__init__.py does), whose import touches no hub.
- `clap_module.model.CLAP.__init__` calls RobertaModel.from_pretrained('roberta-base'), i.e. downloads
  the roberta-base weights only to overwrite them with the text_branch.* tensors of the CLAP checkpoint.
  While the model is built we give `clap_module.model` a RobertaModel whose from_pretrained() builds
  the same architecture from the local roberta-base config.json (random init); the checkpoint then
  fills every weight. The rest of the construction is laion_clap's own `create_model`.
- The tokenizer is RobertaTokenizer from the local vocab.json + merges.txt.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import pickle
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from avsearch.errors import ConfigError, IncompatibleError

log = logging.getLogger(__name__)
_build_lock = threading.Lock()


def clap_module() -> ModuleType:
    """laion_clap's `clap_module` package, imported without running laion_clap/hook.py."""
    if "clap_module" in sys.modules:
        return sys.modules["clap_module"]
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or spec.origin is None:
        raise ConfigError("laion_clap is not installed (pip install laion_clap==1.1.7)")
    folder = str(Path(spec.origin).parent)
    if folder not in sys.path:
        sys.path.append(folder)  # what laion_clap/__init__.py does, minus importing hook.py
    return importlib.import_module("clap_module")


@contextlib.contextmanager
def _local_roberta(config_path: Path) -> Iterator[None]:
    """Within the block, clap_module.model builds RoBERTa from `config_path` instead of the hub."""
    from transformers import RobertaConfig, RobertaModel

    clap_module()  # puts laion_clap's folder on sys.path
    model_module = importlib.import_module("clap_module.model")

    class _LocalRoberta(RobertaModel):
        @classmethod
        def from_pretrained(cls, *_args: Any, **_kwargs: Any) -> RobertaModel:  # type: ignore[override]
            # Architecture only: the CLAP checkpoint holds the fine-tuned text_branch weights.
            return RobertaModel(RobertaConfig.from_json_file(str(config_path)))

    original = model_module.RobertaModel
    with _build_lock:
        model_module.RobertaModel = _LocalRoberta
        try:
            yield
        finally:
            model_module.RobertaModel = original


TRUST_ENV = "AVSEARCH_TRUST_CHECKPOINTS"  # "1": allow a full (unsafe) unpickle of a CLAP checkpoint


def _numpy_safe_globals() -> list[Any]:
    """numpy objects that training checkpoints often hold (scalars in logged metrics): data, not code."""
    import numpy as np
    from numpy.core.multiarray import scalar  # numpy<2 path, as pinned by laion_clap

    return [scalar, np.dtype, *{type(np.dtype(t)) for t in ("f4", "f8", "i8", "i4", "b")}]


def load_checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    """The model state dict of a CLAP training checkpoint ({'state_dict': ...}, 'module.' prefixes).

    Read with weights_only=True (plus numpy scalars and dtypes); nothing else is unpickled unless the
    user sets AVSEARCH_TRUST_CHECKPOINTS=1 for a file they trust.
    """
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if os.environ.get(TRUST_ENV) != "1":
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise IncompatibleError(
                f"{path}: holds objects a weights-only load refuses ({first}); if you trust this file, "
                f"set {TRUST_ENV}=1 to load it fully"
            ) from exc
        log.warning("%s: loading fully (unsafe unpickle) because %s=1", path, TRUST_ENV)
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError) as exc:
        raise IncompatibleError(f"{path}: unreadable CLAP checkpoint ({exc})") from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state:
        raise IncompatibleError(f"{path}: not a CLAP checkpoint (no state_dict)")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


def build_clap(
    checkpoint: Path,
    roberta_config: Path,
    options: dict[str, Any],
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """laion_clap CLAP (fusion HTSAT + RoBERTa) with `checkpoint` loaded, eval mode, on CPU float32.

    Returns (model, model_cfg) where model_cfg["audio_cfg"] is the audio front-end configuration.
    """
    cm = clap_module()
    with _local_roberta(roberta_config):
        model, model_cfg = cm.create_model(
            options["amodel"],
            options["tmodel"],
            precision="fp32",
            device=torch.device("cpu"),
            enable_fusion=True,
            fusion_type=options["fusion_type"],
        )
    state = load_checkpoint_state(checkpoint)
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
