"""Query uploads: a multipart form read as it streams in, under a size limit, into a temporary file.

The request body is counted while it arrives and refused (413) as soon as it passes the limit, so an
oversized upload is never held in memory or on disk in full. The file is written without its client name
or extension (the server decides what it is by decoding it, media/detect.py) and deleted when the request
ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from avsearch.errors import AvsearchError, DecodeError, InputError
from avsearch.media.detect import detect
from avsearch.media.failures import NOT_MEDIA
from avsearch.media.walk import printable
from avsearch.serve.errors import NotMedia, UploadTooLarge

FILE_FIELD = "file"
_FORM_SLACK = 64 * 1024  # multipart boundaries, part headers and the small text fields
_MAX_FIELDS = 16
_MAX_FIELD_BYTES = 16 * 1024
_MAX_NAME = 200  # characters of the client's file name kept for messages


@dataclass(frozen=True)
class Upload:
    path: Path  # the temporary copy (no extension)
    name: str  # the client's file name, printable and shortened: names the upload in error messages
    fields: dict[str, str]  # the form's text fields


def _too_large(limit: int) -> UploadTooLarge:
    return UploadTooLarge(f"upload larger than the server's limit of {limit:,} bytes ({limit / 2**20:.1f} MiB)")


async def _bounded(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise _too_large(limit - _FORM_SLACK)
        yield chunk


def _client_name(upload: UploadFile) -> str:
    name = os.path.basename((upload.filename or "").replace("\\", "/")) or "upload"
    name = printable(name.replace("\x00", ""))
    return name if len(name) <= _MAX_NAME else name[: _MAX_NAME - 3] + "..."


@contextlib.asynccontextmanager
async def receive_upload(request: Request, limit: int) -> AsyncIterator[Upload]:
    """The uploaded `file` field (at most `limit` bytes) as a temporary file, plus the text fields."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InputError("send the query file as multipart/form-data with a `file` field")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _FORM_SLACK:
        raise _too_large(limit)  # refused before a byte of the body is read
    parser = MultiPartParser(
        request.headers,
        _bounded(request.stream(), limit + _FORM_SLACK),
        max_files=1,
        max_fields=_MAX_FIELDS,
        max_part_size=_MAX_FIELD_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InputError(f"malformed upload: {exc.message}") from None
    try:
        upload = form.get(FILE_FIELD)
        if not isinstance(upload, UploadFile):
            raise InputError("the upload has no `file` field holding a file")
        if upload.size is not None and upload.size > limit:
            raise _too_large(limit)
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        with tempfile.TemporaryDirectory(prefix="avsearch-upload-") as tmp:
            path = Path(tmp) / "upload"
            await run_in_threadpool(_copy, upload, path)
            yield Upload(path, _client_name(upload), fields)
    finally:
        await form.close()


def upload_kind(upload: Upload) -> str:
    """The upload's modality, told by decoding its content (never its name): DecodeError for broken media,
    NotMedia (415) for anything else."""
    found = detect(upload.path)
    if found.failed:
        raise DecodeError(f"{upload.path}: {found.reason}")
    if found.kind is None:
        raise NotMedia(f"{upload.path}: {NOT_MEDIA}")
    return found.kind


@contextlib.contextmanager
def naming_the_upload(upload: Upload) -> Iterator[None]:
    """Errors raised inside give the CLI's reason with the client's file name instead of our temporary copy."""
    try:
        yield
    except AvsearchError as exc:
        raise type(exc)(str(exc).replace(str(upload.path), upload.name)) from None


def _copy(upload: UploadFile, path: Path) -> None:
    upload.file.seek(0)
    with path.open("wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
