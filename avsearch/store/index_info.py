"""What an index holds, per modality (`avsearch info`), and its record of files that failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from avsearch.store import ann_files
from avsearch.store.manifest import Manifest

if TYPE_CHECKING:
    from avsearch.store.index import Index


@dataclass(frozen=True)
class FailedFile:
    """A file that could not be indexed, as it was when it failed."""

    size: int
    mtime_ns: int
    reason: str


@dataclass
class ModalityInfo:
    """What one modality's table holds (for `avsearch info`)."""

    modality: str
    files: int
    bytes: int  # total size of the indexed files
    encoder: str
    encoder_fingerprint: str | None
    space: str
    native_dim: int
    shared: dict[str, int]  # projected column -> width
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> FAISS params (+ stale)
    moments: int = 0  # rows that are moments (video frames, sound segments) rather than whole files


@dataclass
class IndexInfo:
    index_dir: str
    manifest: Manifest
    modalities: list[ModalityInfo]
    disk_bytes: int  # everything under the index folder
    failed: dict[str, FailedFile] = field(default_factory=dict)  # path -> why it is not indexed


def describe_index(index: Index) -> IndexInfo:
    """Counts, sizes, encoders and FAISS builds per modality, without loading any model."""
    present = index.tables.modalities()
    infos = []
    for modality, entry in index.manifest.modalities.items():
        files, size, indexes, moments = 0, 0, {}, 0
        if modality in present:
            rows = index.tables.file_rows(modality)  # one per file, a video's moments too
            files, size = len(rows), sum(n for n, _ in rows.values())
            moments = index.tables.count(modality) - sum(1 for _, start in rows.values() if start is None)
            version = index.tables.version(modality)
            for column in index.tables.vector_columns(modality):
                meta = index.ann_meta(ann_files.ann_name(modality, column))
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
                index.manifest.shared_dims(modality),
                indexes,
                moments,
            )
        )
    return IndexInfo(str(index.path), index.manifest, infos, index.location.total_bytes(), index.failed_files())
