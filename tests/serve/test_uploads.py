"""Upload limits at the ASGI level: an oversized body is refused while it streams in, not after it has
been read (the test counts the body chunks the server pulled). Index from the test-only FAKE encoder."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.serve.conftest import UPLOAD_LIMIT

CHUNK = 64 * 1024
BOUNDARY = b"XyZ"
PART_HEAD = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'


def _post_stream(app: FastAPI, chunks: Iterator[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, dict, int]:
    """POST /api/search with a body sent chunk by chunk; (status, JSON body, chunks the server pulled)."""
    pulled = 0
    replies: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict) -> None:
        replies.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/search",
        "raw_path": b"/api/search",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"content-type", b"multipart/form-data; boundary=" + BOUNDARY), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in replies if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in replies if m["type"] == "http.response.body")
    return status, json.loads(body), pulled


def _endless_upload(total_chunks: int) -> Iterator[bytes]:
    yield PART_HEAD
    for _ in range(total_chunks):
        yield b"\0" * CHUNK


def test_oversized_stream_is_refused_before_it_is_read(client: TestClient) -> None:
    available = 160  # 10 MiB on offer; the limit is 256 KiB
    status, body, pulled = _post_stream(client.app, _endless_upload(available), [])
    assert status == 413 and "limit" in body["error"]
    assert pulled <= (UPLOAD_LIMIT + 64 * 1024) // CHUNK + 2 < available


def test_declared_length_over_the_limit_is_refused_unread(client: TestClient) -> None:
    status, body, pulled = _post_stream(client.app, _endless_upload(160), [(b"content-length", b"10485760")])
    assert (status, pulled) == (413, 0)
