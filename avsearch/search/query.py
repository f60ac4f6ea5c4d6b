"""One query, as a user states it: exactly one of a sound, a picture, a 3D shape, a text or an indexed
item, against one target modality or all. Shared by `avsearch query` and the Python API."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from avsearch.errors import InputError
from avsearch.media.detect import detect
from avsearch.modalities import AUDIO, IMAGE, POINTCLOUD, VIDEO
from avsearch.search.engine import SearchEngine, SearchFilters
from avsearch.search.piece import SOURCE_OF, search_pieces
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
    where: str | None = None,
    filters: SearchFilters | None = None,
    backend: str | None = None,
    video: str | Path | None = None,
    start: float | None = None,
    end: float | None = None,
    source: str | None = None,
) -> list[ResultSet]:
    """Search `index` (an Index, a SearchEngine to reuse loaded models, or an index folder) with exactly
    one query; returns one ResultSet per target modality reached, best hits first.

    item: more like an indexed item (its path or id), from its stored vectors, without loading a model.
    glob: only paths matching this fnmatch pattern, e.g. "*/birds/*".
    where: only rows passing this filter expression, e.g. "duration > 5 and folder = 'field'" (the
    language: avsearch.search.filters). filters: a SearchFilters with the flag shortcuts too (ext,
    folder, durations, tags, since/until); glob and where, when given, are added to it.
    backend: "cmcr", "cavmae" or "both" (one list per target and backend, each ResultSet naming its
    backend); None: configs/backends.toml's default. Text takes C-MCR only (CAV-MAE has no text tower).
    video: a video as the query: its sound and its frames (source "audio" or "frames": one of them), each
    giving its own lists (search/piece.py). start, end: seconds, a piece of the video or of `audio`.
    """
    files = {AUDIO: audio, IMAGE: image, POINTCLOUD: pointcloud, VIDEO: video}
    given = [name for name, v in files.items() if v is not None]
    given += [name for name, v in (("text", text), ("id", item)) if v is not None]
    if len(given) != 1:
        raise InputError(
            "give exactly one of --audio FILE, --image FILE, --pointcloud FILE, --video FILE, --text TEXT or --id ITEM"
        )
    piece = video is not None or start is not None or end is not None
    if (piece or source is not None) and given[0] not in (AUDIO, VIDEO):
        raise InputError("--start, --end and --from take a piece of an --audio or --video file")
    if isinstance(index, SearchEngine):
        engine = index
    else:
        engine = SearchEngine(index if isinstance(index, Index) else Index.open(index))
    filters = _combined(filters, glob, where)
    if text is not None:
        return engine.search_text(text, target, k, filters, backend)
    if item is not None:
        return engine.search_item(item, target, k, filters, backend)
    modality = given[0]
    if not piece and modality in SOURCE_OF and detect(Path(files[modality]).expanduser()).kind == VIDEO:  # type: ignore[arg-type]
        piece, source = True, SOURCE_OF[modality]  # `--audio walk.mp4`: its sound track; `--image`: its frames
    if piece:
        path = Path(files[modality]).expanduser()  # type: ignore[arg-type]
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        return search_pieces(path, start, end, source, lambda p: engine.search_piece(p, target, k, filters, backend))
    return engine.search_file(files[modality], modality, target, k, filters, backend)  # type: ignore[arg-type]


def _combined(filters: SearchFilters | None, glob: str | None, where: str | None) -> SearchFilters | None:
    """One SearchFilters from the filters given and the glob/where shortcuts (every one must hold)."""
    filters = filters or SearchFilters()
    if glob:
        if filters.path_glob is not None and filters.path_glob != glob:
            raise InputError("give one glob: `glob` and `filters.path_glob` differ")
        filters = replace(filters, path_glob=glob)
    if where is not None and where.strip():
        both = f"({filters.where}) AND ({where})" if filters.where else where
        filters = replace(filters, where=both)
    return filters if filters.active else None
