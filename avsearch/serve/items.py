"""Indexed items by id: the row lookup, the item's JSON and the file it names.

An id is a row key (32 lowercase hex digits, `avsearch.store.table_schema.is_key`). It is checked for that form
before any lookup, and a file is only ever reached through the path its row records: nothing the client
sends becomes part of a filesystem path.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from avsearch.errors import InputError
from avsearch.media.detect import detect
from avsearch.media.walk import printable
from avsearch.modalities import AUDIO, IMAGE, VIDEO
from avsearch.serve.errors import NotFound
from avsearch.serve.files import IndexedFile, open_indexed_file
from avsearch.store.index import Index
from avsearch.store.table_schema import FileRecord, is_key

# Bookkeeping of a row that says how it was made, not what the item is: left out of the item's JSON.
_INTERNAL = ("hash", "encoder", "bridge", "track")

# Detected format -> Content-Type. Unknown formats are sent as bytes.
_MIME = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "avif": "image/avif",
    "heif": "image/heif",
    "jpeg2000": "image/jp2",
    "ico": "image/vnd.microsoft.icon",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "aac": "audio/aac",
    "aiff": "audio/aiff",
    "au": "audio/basic",
    "m4a": "audio/mp4",
    "caf": "audio/x-caf",
    "amr": "audio/amr",
    "w64": "audio/x-w64",
    "matroska": "audio/x-matroska",
    "asf": "audio/x-ms-wma",
    "obj": "model/obj",
    "stl": "model/stl",
    "ply": "application/octet-stream",
}
# A video's container (detect's format for kind VIDEO) -> Content-Type, so a <video> plays and seeks it.
_VIDEO_MIME = {"mp4": "video/mp4", "matroska": "video/x-matroska", "webm": "video/webm", "avi": "video/x-msvideo"}
_UNKNOWN_ID = "unknown item id (an id is the 32-hex-digit `id` of a search hit)"


def find_item(index: Index, item_id: str) -> tuple[str, FileRecord] | None:
    """(modality, row) of the item with this id, or None; an id not of the key form is never looked up."""
    if not is_key(item_id):
        return None
    for modality in index.tables.modalities():
        records, _ = index.tables.fetch(modality, [item_id])
        if records:
            return modality, records[0]
    return None


def require_item(index: Index, item_id: str) -> tuple[str, FileRecord]:
    """find_item, or NotFound (404)."""
    found = find_item(index, item_id)
    if found is None:
        raise NotFound(_UNKNOWN_ID)
    return found


def require_item_in(index: Index, item_id: str, modality: str, role: str) -> FileRecord:
    """The row of `item_id`, an item of file modality `modality`, or NotFound (404); InputError naming what
    it is when it is an item of another kind. Ids are unique across file modalities (a video's frame and its
    sound segment have keys of their own: table_schema.moment_key); a file in two backends' tables (C-MCR's
    "image", CAV-MAE's "cavmae_image") is one item, found in either."""
    table, record = require_item(index, item_id)
    kind = index.manifest.kind(table) if table in index.manifest.modalities else table
    if kind != modality:
        raise InputError(f"{role} names a {kind} item, not {_KIND_NAMES.get(modality, modality)}")
    return record


_KIND_NAMES = {IMAGE: "a picture", AUDIO: "a sound"}


def item_json(item_id: str, modality: str, record: FileRecord) -> dict[str, Any]:
    """id, path, name, modality, size, mtime_ns and any further descriptive field the row has."""
    extra = {k: v for k, v in asdict(record).items() if k not in _INTERNAL and k != "path"}
    path = printable(record.path)
    return {"id": item_id, "path": path, "name": os.path.basename(path), "modality": modality, **extra}


def item_file(index: Index, record: FileRecord, follow_symlinks: str) -> IndexedFile:
    """The item's file, opened and checked against its row (serve/files.py: inside the index's roots,
    unchanged since indexing); NotFound when it is gone, elsewhere or not a regular file (an item indexed
    from vectors, `avsearch index --embeddings`, has no file), ChangedSinceIndexing when it changed."""
    return open_indexed_file(record, index.manifest.roots, follow_symlinks)


def media_type(path: Path) -> str:
    """The Content-Type of a file, from its detected format (its content, not its name)."""
    found = detect(path)
    table = _VIDEO_MIME if found.kind == VIDEO else _MIME  # a Matroska video is not audio/x-matroska
    return table.get(found.format, "application/octet-stream")
