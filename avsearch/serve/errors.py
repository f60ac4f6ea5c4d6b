"""Errors as the HTTP API reports them: {"error": "<one line>"} with a 4xx status, as the CLI prints them.

Library errors (AvsearchError) keep their own message and get a status by kind. Anything else is a bug in
avsearch: 500 with a one-line JSON body, its traceback in the server's log (never in the response).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from avsearch.errors import (
    AvsearchError,
    ConfigError,
    DamagedIndexError,
    DecodeError,
    IncompatibleError,
    InputError,
    StorageError,
    WeightsMissingError,
)

log = logging.getLogger(__name__)


class NotFound(InputError):
    """No such item, file or page (404)."""


class ChangedSinceIndexing(InputError):
    """An item whose file is no longer the one indexed (409): not served until it is indexed again."""


class UploadTooLarge(InputError):
    """An upload over the server's size limit (413)."""


class NotMedia(InputError):
    """An upload that is not an audio, image, video or point-cloud file by its content (415)."""


# Most specific first: DecodeError is an InputError, NotFound too.
_STATUS: tuple[tuple[type[AvsearchError], int], ...] = (
    (NotFound, 404),
    (ChangedSinceIndexing, 409),
    (UploadTooLarge, 413),
    (NotMedia, 415),
    (DecodeError, 400),
    (InputError, 400),
    (ConfigError, 400),
    (IncompatibleError, 409),  # the index and its bridges or weights do not fit together
    (WeightsMissingError, 503),  # the server cannot answer this kind of query until weights are added
    (DamagedIndexError, 503),
    (StorageError, 503),  # the object store does not answer now
)


def status_of(exc: AvsearchError) -> int:
    """The HTTP status of a library error."""
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 400)


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def one_line(text: str) -> str:
    return " ".join(str(text).split()) or "error"


async def _library_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AvsearchError)
    return error_response(status_of(exc), one_line(str(exc)))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
    return error_response(400, one_line(f"{where}: {first.get('msg', 'invalid value')}"))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse({"error": one_line(str(exc.detail))}, status_code=exc.status_code, headers=exc.headers)


class CatchBugs:
    """ASGI middleware: a bug (any other exception) is logged once, with its traceback, and answered 500
    {"error": ...}; a client that went away mid-request (ClientDisconnect) is logged as that, not as a
    bug. (Starlette's own handler for Exception answers and then re-raises, so uvicorn logged each
    500 a second time.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except ClientDisconnect:
            log.info("the client went away during %s %s", scope["method"], scope["path"])
        except Exception as exc:
            log.error("internal error on %s %s", scope["method"], scope["path"], exc_info=exc)
            if not started:  # else the client has part of an answer already: nothing more can be said
                name = type(exc).__name__
                bug = error_response(500, f"internal error in avsearch ({name}); the server log has the details")
                await bug(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app answers with becomes {"error": ...}."""
    app.add_exception_handler(AvsearchError, _library_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(CatchBugs)
