"""Whether a text tower's attention mask is causal: the condition for running CLIP's text tower only up to
the batch's last end-of-text token (encoders/clip.py on torch, encoders/onnx_clip.py's cut export). Its
own module so that both can import it without an import circle (clip -> registry -> onnx_towers ->
onnx_clip)."""

from __future__ import annotations

import torch


def is_causal(mask: torch.Tensor | None, length: int) -> bool:
    """True when `mask` (L, L) hides every later position from every earlier one (-inf above the diagonal)."""
    if mask is None or mask.dim() != 2 or mask.shape[0] < length or mask.shape[1] < length:
        return False
    upper = torch.ones(mask.shape, dtype=torch.bool, device=mask.device).triu(1)
    return bool(torch.isneginf(mask[upper]).all() and (mask[~upper] == 0).all())
