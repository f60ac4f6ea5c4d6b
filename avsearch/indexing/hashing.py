"""Content hashes of media files (find renames, copies and touched-but-unchanged files)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def content_hash(path: str | Path) -> str:
    """blake2b-160 of the whole file, hex. Raises OSError when the file cannot be read."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=20)).hexdigest()
