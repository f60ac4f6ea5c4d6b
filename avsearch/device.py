"""Device choice: CUDA when present, CPU otherwise, unless the user names one."""

from __future__ import annotations

import torch

from avsearch.errors import ConfigError
from avsearch.settings import load_settings


def pick_device(requested: str | None = None) -> torch.device:
    """Return the torch device to run on. `requested` (or AVSEARCH_DEVICE) overrides auto-detection."""
    name = requested or load_settings().device
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}: use 'cpu', 'cuda' or 'cuda:N'") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available on this machine")
    return device
