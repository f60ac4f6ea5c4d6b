"""Encoder fingerprints, computed without torch (an ONNX query path must name the weights it runs, as the
torch encoders do, to be checked against an index's manifest). Re-exported by encoders/runtime.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def file_identity(path: Path) -> str:
    """Cheap identity of a (possibly multi-GB) weight file: size + SHA256 of its first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), 2)
            digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:16]


def fingerprint(name: str, weight_paths: Sequence[Path], options: dict[str, Any]) -> str:
    """Encoder fingerprint: registry name + weight identities + preprocessing options."""
    payload = {
        "name": name,
        "weights": [file_identity(p) for p in weight_paths],
        "options": options,
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return f"{name}:{hashlib.sha256(blob).hexdigest()[:16]}"
