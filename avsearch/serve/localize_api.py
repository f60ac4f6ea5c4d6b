"""Where is the sound in the picture, and does it belong there, over HTTP (beside search):

    GET  /api/localize?audio_id=&image_id=&top=&heat=      both indexed items
    POST /api/localize   multipart: file (a sound), image_id, top, heat
    GET  /api/match?audio_id=&image_id=&threshold=
    POST /api/match      multipart: file (a sound), image_id, threshold

The picture is always an indexed one (by id: a picture, or a video's frame, localised on the frame on
screen at its moment's start); the sound is an indexed one or an upload, so the gallery can
ask "where is it?" on the picture results of a sound it searched with. Answers are the library's
Localization / MatchResult dictionaries with ids and names instead of server paths, plus (localize) a
small PNG of the heat map and best box as a data URI. One Localizer per server, built on first use with
the index's audio-visual bridge and the encoders search already loaded.
"""

from __future__ import annotations

import base64
import contextlib
import io
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from PIL import Image
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool

from avsearch.errors import IncompatibleError, InputError
from avsearch.media.video_frame import frame_at
from avsearch.modalities import AUDIO, CLAP, CLIP, IMAGE
from avsearch.serve.form_values import finite_number, query_finite, query_whole, whole_number
from avsearch.serve.items import item_file, require_item_in
from avsearch.serve.live import LiveIndex
from avsearch.serve.uploads import Upload, naming_the_upload, receive_upload, upload_kind

OVERLAY_SIDE = 512  # pixels, the longer side of the overlay sent back
HEATS = ("max", "sum")

ItemId = Annotated[str, Query(description="An indexed item's id (as search results carry it).")]
# The validators hold query strings to the form fields' rule (pydantic alone takes ' 5' and 'nan').
Top = Annotated[int | None, BeforeValidator(query_whole), Query(description="Only the best N proposals in the answer.")]
Threshold = Annotated[
    float | None, BeforeValidator(query_finite), Query(description="Confidence at or above which it belongs.")
]
Heat = Annotated[str, Query(description="Heat map: per-pixel max or score-weighted sum of proposals.")]


class Localizing:
    """The server's Localizer (made on first use) and the lock its caches need."""

    def __init__(self, live: LiveIndex, links: str) -> None:
        self.links = links  # configs/search.toml [ingest] follow_symlinks: which item files may be read
        self.live = live
        self._localizer: Any = None
        self._bridge: str | None = None
        self.lock = threading.Lock()

    def localizer(self) -> Any:
        """The Localizer over the index's current audio-visual bridge (re-made if the index changed it)."""
        from avsearch.localize import Localizer

        index = self.live.current().index
        refs = [b for b in index.manifest.bridges.values() if {CLIP, CLAP} <= set(b.spaces)]
        if not refs:
            raise IncompatibleError("this index has no audio-visual (CLIP-CLAP) bridge to localise sounds with")
        if self._localizer is None or self._bridge != refs[0].path:
            live = self.live
            self._localizer = Localizer(
                refs[0].path, weights_dir=live.weights_dir, device=live.device, encoder_loader=live.loader
            )
            self._bridge = refs[0].path
        return self._localizer

    @contextlib.contextmanager
    def pair(self, audio: Path | str, image_id: str, audio_label: str) -> Iterator[tuple[Any, Path, dict[str, Any]]]:
        """(localizer, picture file, names) for a sound file and an indexed picture. A video's frame (a
        moment of the image table) is the frame on screen at the moment's start, decoded at the size frames
        are indexed at and held in a temporary PNG for the duration of the `with`."""
        index = self.live.current().index
        record = require_item_in(index, image_id, IMAGE, "image_id")
        still = None
        with item_file(index, record, self.links) as opened:  # checked, then decoded
            picture, name = opened.real, opened.name
            if record.start is not None:
                still = frame_at(picture, record.start)
        names: dict[str, Any] = {"audio": audio_label, "image": name, "image_id": image_id}
        if still is None:
            yield self.localizer(), picture, names
            return
        names |= {"start": record.start, "end": record.end}
        with tempfile.TemporaryDirectory(prefix="avsearch-frame-") as tmp:
            frame = Path(tmp) / "frame.png"
            still.save(frame)
            yield self.localizer(), frame, names


def add_localize_routes(app: FastAPI, live: LiveIndex, max_upload_bytes: int, links: str) -> None:
    """Register /api/localize and /api/match on the app (links: which files may be read, serve/files.py)."""
    state = Localizing(live, links)

    def sound_item(audio_id: str) -> tuple[Path, str]:
        record = require_item_in(live.current().index, audio_id, AUDIO, "audio_id")
        with item_file(live.current().index, record, links) as opened:
            return opened.real, opened.name

    @app.get("/api/localize")
    def localize_items(audio_id: ItemId, image_id: ItemId, top: Top = None, heat: Heat = "max") -> dict:
        """Where in the indexed picture the indexed sound comes from: proposals ranked, best box, heat map."""
        path, label = sound_item(audio_id)
        return _localize(state, path, label, image_id, top, heat)

    @app.post("/api/localize")
    async def localize_upload(request: Request) -> dict:
        """The same for an uploaded sound (multipart `file`) and an indexed picture (`image_id`)."""
        async with receive_upload(request, max_upload_bytes) as upload:
            fields = upload.fields
            top = whole_number(fields.get("top"), "top")
            return await run_in_threadpool(
                _on_upload, upload, lambda: _localize(state, upload.path, upload.name, _id(fields), top, _heat(fields))
            )

    @app.get("/api/match")
    def match_items(audio_id: ItemId, image_id: ItemId, threshold: Threshold = None) -> dict:
        """Whether the indexed sound belongs in the indexed picture: confidence, whole-image score, verdict."""
        path, label = sound_item(audio_id)
        return _match(state, path, label, image_id, threshold)

    @app.post("/api/match")
    async def match_upload(request: Request) -> dict:
        """The same for an uploaded sound (multipart `file`) and an indexed picture (`image_id`)."""
        async with receive_upload(request, max_upload_bytes) as upload:
            threshold = finite_number(upload.fields.get("threshold"), "threshold")
            return await run_in_threadpool(
                _on_upload, upload, lambda: _match(state, upload.path, upload.name, _id(upload.fields), threshold)
            )


def _on_upload(upload: Upload, answer: Any) -> dict:
    """Check that the upload is a sound (by its content), then answer; errors name the client's file."""
    with naming_the_upload(upload):
        kind = upload_kind(upload)
        if kind != AUDIO:
            raise InputError(f"{upload.path}: a {kind} file; localisation takes a sound")
        return answer()


def _localize(state: Localizing, audio: Path, label: str, image_id: str, top: int | None, heat: str) -> dict:
    if heat not in HEATS:
        raise InputError(f"heat must be one of {', '.join(HEATS)}, got {heat[:20]!r}")
    if top is not None and top < 1:
        raise InputError(f"top must be at least 1, got {top}")
    with state.lock, state.pair(audio, image_id, label) as (localizer, picture, names):
        found = localizer.localize(audio, picture)
        answer = {**found.to_dict(top), **names}
        answer["overlay"] = _overlay_uri(found, heat)  # drawn while a video's frame is still on disk
    return answer


def _match(state: Localizing, audio: Path, label: str, image_id: str, threshold: float | None) -> dict:
    with state.lock, state.pair(audio, image_id, label) as (localizer, picture, names):
        answer = localizer.match(audio, picture, threshold=threshold).to_dict()
    return {**answer, **names}


def _overlay_uri(found: Any, heat: str) -> str:
    """The heat map and best box over the picture, at most OVERLAY_SIDE pixels, as a PNG data URI."""
    with tempfile.TemporaryDirectory(prefix="avsearch-overlay-") as tmp:
        path = found.save_overlay(Path(tmp) / "overlay.png", mode=heat)
        picture = Image.open(path)
        picture.thumbnail((OVERLAY_SIDE, OVERLAY_SIDE))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _id(fields: dict[str, str]) -> str:
    value = fields.get("image_id") or ""
    if not value:
        raise InputError("give the picture as `image_id` (an indexed item's id)")
    return value


def _heat(fields: dict[str, str]) -> str:
    return fields.get("heat") or "max"
