"""One query, as a user states it: exactly one of a sound, a picture, a 3D shape, a text or an indexed
item, against one target modality or all. Shared by `avsearch query` and the Python API."""

from __future__ import annotations

from pathlib import Path

from avsearch.errors import InputError
from avsearch.modalities import AUDIO, IMAGE, POINTCLOUD
from avsearch.search.engine import SearchEngine, SearchFilters
from avsearch.search.planner import ALL
from avsearch.search.results import ResultSet
from avsearch.store.index import Index


def query(
    index: Index | SearchEngine | str | Path,
    *,
    audio: str | Path | None = None,
    image: str | Path | None = None,
    pointcloud: str | Path | None = None,
    text: str | None = None,
    item: str | None = None,
    target: str = ALL,
    k: int = 10,
    glob: str | None = None,
) -> list[ResultSet]:
    """Search `index` (an Index, a SearchEngine to reuse loaded models, or an index folder) with exactly
    one query; returns one ResultSet per target modality reached, best hits first.

    item: more like an indexed item (its path or id), from its stored vectors, without loading a model.
    glob: only paths matching this fnmatch pattern, e.g. "*/birds/*".
    """
    files = {AUDIO: audio, IMAGE: image, POINTCLOUD: pointcloud}
    given = [name for name, v in files.items() if v is not None]
    given += [name for name, v in (("text", text), ("id", item)) if v is not None]
    if len(given) != 1:
        raise InputError("give exactly one of --audio FILE, --image FILE, --pointcloud FILE, --text TEXT or --id ITEM")
    if isinstance(index, SearchEngine):
        engine = index
    else:
        engine = SearchEngine(index if isinstance(index, Index) else Index.open(index))
    filters = SearchFilters(path_glob=glob) if glob else None
    if text is not None:
        return engine.search_text(text, target, k, filters)
    if item is not None:
        return engine.search_item(item, target, k, filters)
    modality = given[0]
    return engine.search_file(files[modality], modality, target, k, filters)  # type: ignore[arg-type]
