"""The HTTP API of `avsearch serve` (FastAPI) over one index folder, and the web gallery's files.

    GET  /api/info                          the index description, plus "version"
    GET  /api/search?text=&k=&target=&where=&glob=
    POST /api/search                        multipart: file (the query), k, target, where, glob
    GET  /api/items/{id}/similar?k=&target=&where=&glob=
    GET  /api/items/{id}                    the item's row
    GET  /api/items/{id}/media              the file (HTTP Range answered with 206)
    GET  /api/items/{id}/thumbnail          image/jpeg (a picture, a cloud drawn, a waveform, a moment's frame)
    GET|POST /api/localize, /api/match      where the sound is in a picture, whether it belongs (localize_api.py)
    GET  /                                  the gallery (avsearch/serve/static/index.html; the rest at /static/)

Searches return {"query": {...}, "results": [ResultSet.to_dict(), ...]}; errors {"error": "..."} with a
4xx status (serve/errors.py). Models load on first use and stay loaded for the life of the process.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool

from avsearch import __version__
from avsearch.embedding.models import EncoderLoader
from avsearch.errors import InputError
from avsearch.media.walk import printable
from avsearch.search.engine import SearchFilters
from avsearch.search.planner import ALL
from avsearch.search.results import ResultSet, apply_min_score, parse_min_score
from avsearch.serve.config import load_serve_config
from avsearch.serve.describe import describe_index
from avsearch.serve.errors import NotFound, install_error_handlers
from avsearch.serve.files import IndexedFileResponse
from avsearch.serve.form_values import query_whole, whole_number
from avsearch.serve.items import item_file, item_json, media_type, require_item
from avsearch.serve.live import LiveIndex
from avsearch.serve.localize_api import add_localize_routes
from avsearch.serve.thumbnails import Thumbnails
from avsearch.serve.towers import serve_loader
from avsearch.serve.uploads import FILE_FIELD, Upload, naming_the_upload, receive_upload, upload_kind
from avsearch.store.config import load_search_config
from avsearch.store.location import Location

DEFAULT_MAX_UPLOAD = 64 * 2**20  # bytes
STATIC_DIR = Path(__file__).parent / "static"
MAX_K = 1000
_MAX_TEXT = 2000  # characters of a text query, filter or glob

# query_whole: ASCII digits only, as the upload form's k (pydantic alone takes ' 5', '5.0' and '1_000')
K = Annotated[int, BeforeValidator(query_whole), Query(description=f"Results per target modality (1..{MAX_K}).")]
Target = Annotated[str, Query(description="image, audio, pointcloud or all.")]
Where = Annotated[str | None, Query(description="Metadata filter, e.g. \"duration > 5 and folder = 'field'\".")]
Glob = Annotated[str | None, Query(description="Only paths matching this pattern, e.g. '*/birds/*'.")]
Backend = Annotated[str | None, Query(description="cmcr, cavmae or both (default: configs/backends.toml).")]
MinScore = Annotated[
    str | None,
    Query(description="Drop hits below this score: a number, or 'auto' (the bridge's calibrated 0.5 level)."),
]


def create_app(
    index_dir: str | Path | Location,
    *,
    weights_dir: str | Path | None = None,
    device: str | None = None,
    encoder_loader: EncoderLoader | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    reload_interval: float = 0.5,
    warm: bool = False,
    static_dir: Path = STATIC_DIR,
    parallel: int | None = None,
    announce: Callable[[str], None] | None = None,
    onnx_towers: Collection[str] | None = None,
) -> FastAPI:
    """The API over the index at `index_dir` (opened now: InputError when there is none): a folder, an
    s3:// URI or a Location with storage options; thumbnails of an object-store index are cached locally.

    encoder_loader: how encoders are loaded, as `Index.open` takes it (a test hook: tests pass a fake
    encoder; None loads the real models from `weights_dir`). reload_interval: at most how often (seconds)
    the server looks for a new index commit. warm: load the text query's models in the background at
    start instead of on the first query (`announce` gets one line saying how long it took). parallel:
    searches computed at once (default: configs/serve.toml). onnx_towers: "<encoder>:<tower>" run on ONNX
    Runtime (serve/towers.py; default: configs/serve.toml), loaded at the warm start too.
    """
    search_limits = load_serve_config().search
    if parallel is None:
        parallel = search_limits.resolved()[0]
    if onnx_towers is None:
        onnx_towers = search_limits.onnx_towers
    if encoder_loader is None:
        encoder_loader = serve_loader(weights_dir, device, onnx_towers)
    live = LiveIndex(
        index_dir,
        weights_dir=weights_dir,
        device=device,
        encoder_loader=encoder_loader,
        check_interval=reload_interval,
        parallel=parallel,
        warm_towers=onnx_towers,
    )
    try:
        cache: Path | None = live.current().index.cache_dir("thumbnails")
    except OSError:
        cache = None
    thumbnails = Thumbnails(cache)
    links = load_search_config().ingest.follow_symlinks  # which files outside the roots may be served

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm:
            threading.Thread(target=_warm, args=(live, announce), name="avsearch-warm", daemon=True).start()
        yield

    app = FastAPIOffline(  # /docs and /redoc serve Swagger UI's files from the package: no CDN, works off-line
        title="avsearch",
        version=__version__,
        summary="Cross-modal search over sound, pictures, text and 3D shapes.",
        lifespan=lifespan,
    )
    app.state.live = live
    app.state.thumbnails = thumbnails
    app.state.max_upload_bytes = max_upload_bytes
    install_error_handlers(app)

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        """What the index holds (as `avsearch info`), the avsearch version and this server's limits."""
        snapshot = live.current()
        if snapshot.info is None:
            snapshot.info = describe_index(snapshot.index)
        limits = {"max_upload_bytes": max_upload_bytes, "max_k": MAX_K, "where": True}
        return {**snapshot.info, "version": __version__, "server": limits}

    @app.get("/api/search")
    def search_text(
        text: str,
        k: K = 10,
        target: Target = ALL,
        where: Where = None,
        glob: Glob = None,
        backend: Backend = None,
        min_score: MinScore = None,
    ) -> dict:
        """Search by text: images in CLIP's space, sounds in CLAP's, 3D through the 3D bridge."""
        filters = _filters(where, glob)
        cut = parse_min_score(min_score)
        _check(k, text=text)
        with live.searching() as engine:
            results = engine.search_text(text, target, k, filters, backend or None)
        query = {"text": text, "k": k, "target": target, "where": where, "glob": glob, **_echo(backend)}
        return _answer(query, results, cut)

    @app.post(
        "/api/search",
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _FORM}}}},
    )
    async def search_file(request: Request) -> dict:
        """Search by an uploaded sound, picture or point cloud (told apart by decoding, not by name)."""
        async with receive_upload(request, max_upload_bytes) as upload:
            return await run_in_threadpool(_search_upload, live, upload)

    @app.get("/api/items/{item_id}/similar")
    def similar(
        item_id: str,
        k: K = 10,
        target: Target = ALL,
        where: Where = None,
        glob: Glob = None,
        backend: Backend = None,
        min_score: MinScore = None,
    ) -> dict:
        """More like an indexed item: its stored vectors are the query (no model loads)."""
        filters = _filters(where, glob)
        cut = parse_min_score(min_score)
        _check(k)
        with live.searching() as engine:
            modality, record = require_item(engine.index, item_id)
            results = engine.search_item(item_id, target, k, filters, backend or None)
        query = {"id": item_id, "path": printable(record.path), "modality": modality, "k": k, "target": target}
        return _answer({**query, "where": where, "glob": glob, **_echo(backend)}, results, cut)

    @app.get("/api/items/{item_id}")
    def item(item_id: str) -> dict[str, Any]:
        """The item's row: id, path, name, modality, size, mtime_ns (and any metadata the index keeps)."""
        modality, record = require_item(live.current().index, item_id)
        return item_json(item_id, modality, record)

    @app.get("/api/items/{item_id}/media", response_class=FileResponse)
    def media(item_id: str) -> FileResponse:
        """The item's file, only while it is the file indexed (404/409 otherwise: serve/files.py); Range
        requests get 206 Partial Content (audio players seek)."""
        snapshot = live.current()
        _, record = require_item(snapshot.index, item_id)
        opened = item_file(snapshot.index, record, links)
        try:
            kind = media_type(opened.real)
        except BaseException:
            opened.close()
            raise
        return IndexedFileResponse(opened, media_type=kind, filename=opened.name, content_disposition_type="inline")

    @app.get("/api/items/{item_id}/thumbnail", response_class=FileResponse)
    def thumbnail(item_id: str) -> FileResponse:
        """A JPEG preview: a picture scaled down, a point cloud drawn, a sound's waveform, a video moment's
        frame at its start; made once, then cached."""
        snapshot = live.current()
        modality, record = require_item(snapshot.index, item_id)
        with item_file(snapshot.index, record, links) as opened:
            jpeg = thumbnails.get(item_id, modality, opened, record.start, record.end)
        return FileResponse(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    add_localize_routes(app, live, max_upload_bytes, links)  # /api/localize, /api/match

    @app.get("/", include_in_schema=False)
    def gallery() -> FileResponse:
        page = static_dir / "index.html"
        if not page.is_file():
            raise NotFound("the web gallery is not installed (avsearch/serve/static/index.html); the API is at /api")
        return FileResponse(page, media_type="text/html")

    if static_dir.is_dir():
        app.mount("/static", StaticFiles(directory=static_dir), name="static")
    return app


_FORM = {
    "type": "object",
    "required": [FILE_FIELD],
    "properties": {
        FILE_FIELD: {"type": "string", "format": "binary", "description": "A sound, picture or point cloud."},
        "k": {"type": "integer", "default": 10},
        "target": {"type": "string", "default": ALL},
        "where": {"type": "string"},
        "glob": {"type": "string"},
        "min_score": {"type": "string", "description": "a number, or 'auto'"},
    },
}


def _warm(live: LiveIndex, announce: Callable[[str], None] | None) -> None:
    seconds = live.warm()
    if seconds is not None and announce is not None:
        announce(f"avsearch: models loaded in {seconds:.1f} s; the first search is warm")


def _search_upload(live: LiveIndex, upload: Upload) -> dict:
    """Detect the upload's kind by its content, then search with it (in a worker thread)."""
    fields = upload.fields
    where, glob = fields.get("where") or None, fields.get("glob") or None
    target = fields.get("target") or ALL
    backend = fields.get("backend") or None
    raw_k = whole_number(fields.get("k"), "k")  # not isdigit(): it takes '²', which int() refuses
    k = 10 if raw_k is None else raw_k
    cut = parse_min_score(fields.get("min_score"))
    _check(k)
    filters = _filters(where, glob)
    with naming_the_upload(upload):
        kind = upload_kind(upload)
        with live.searching() as engine:
            results = engine.search_file(upload.path, kind, target, k, filters, backend)
    for result in results:  # each list names its query: the name sent, not the server's temporary copy
        result.query = upload.name
    query = {"file": upload.name, "modality": kind, "k": k, "target": target, "where": where, "glob": glob}
    query.update(_echo(backend))
    return _answer(query, results, cut)


def _echo(backend: str | None) -> dict[str, str]:
    """The backend asked for, echoed in the answer's query only when one was (older clients see no change)."""
    return {"backend": backend} if backend else {}


def _filters(where: str | None, glob: str | None) -> SearchFilters | None:
    """The search filters of a request (empty values mean none)."""
    where, glob = where or None, glob or None
    for name, value in (("where", where), ("glob", glob)):
        if value is not None and len(value) > _MAX_TEXT:
            raise InputError(f"{name}: longer than {_MAX_TEXT} characters")
    if where is None and glob is None:
        return None
    return SearchFilters(path_glob=glob, where=where)


def _check(k: int, text: str | None = None) -> None:
    if not 1 <= k <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K}, got {k}")
    if text is not None and len(text) > _MAX_TEXT:
        raise InputError(f"the query text is longer than {_MAX_TEXT} characters")


def _answer(query: dict[str, Any], results: list[ResultSet], min_score: float | str | None = None) -> dict[str, Any]:
    """The JSON of a search; with a minimum score, hits below it are dropped (each list counts them in
    `weaker`) and the query echoes it."""
    apply_min_score(results, min_score)
    if min_score is not None:
        query = {**query, "min_score": min_score}
    return {"query": query, "results": [r.to_dict() for r in results]}
