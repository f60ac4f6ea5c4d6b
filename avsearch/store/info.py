"""What an index holds (for `avsearch info`): counts, sizes, encoders, bridge, FAISS kinds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsearch.errors import InputError
from avsearch.store.ann_files import ann_name, read_ann_meta
from avsearch.store.manifest import Manifest, load_manifest
from avsearch.store.tables import MediaStore


@dataclass
class ModalityInfo:
    modality: str
    files: int
    bytes: int  # total size of the indexed files
    encoder: str
    encoder_fingerprint: str | None
    space: str
    native_dim: int
    shared: dict[str, int]  # projected column -> width
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> FAISS params (+ stale)


@dataclass
class IndexInfo:
    index_dir: str
    manifest: Manifest
    modalities: list[ModalityInfo]
    disk_bytes: int  # everything under the index folder


def describe_index(index_dir: str | Path) -> IndexInfo:
    """Read an index folder without loading any model."""
    index_dir = Path(index_dir).expanduser().absolute()
    manifest = load_manifest(index_dir)
    if manifest is None:
        raise InputError(f"{index_dir}: no index here; build one with `avsearch index FOLDER`")
    store = MediaStore(index_dir)
    present = store.modalities()
    infos = []
    for modality, entry in manifest.modalities.items():
        files, size, indexes = 0, 0, {}
        if modality in present:
            book = store.bookkeeping(modality)
            files, size = len(book), sum(r.size for r in book.values())
            version = store.version(modality)
            for column in store.vector_columns(modality):
                meta = read_ann_meta(index_dir, ann_name(modality, column))
                if meta is not None:
                    indexes[column] = {**meta["params"], "stale": meta["table_version"] != version}
        infos.append(
            ModalityInfo(
                modality,
                files,
                size,
                entry.encoder,
                entry.encoder_fingerprint,
                entry.space,
                entry.native_dim,
                manifest.shared_dims(modality),
                indexes,
            )
        )
    disk = sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file())
    return IndexInfo(str(index_dir), manifest, infos, disk)
