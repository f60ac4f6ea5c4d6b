"""uvicorn's HTTP/1.1 protocol (h11) with the deadlines and the connection cap uvicorn itself lacks.

uvicorn closes an idle kept-alive connection (timeout_keep_alive) but never a client that connects and
sends nothing, trickles its headers, or trickles its body: each holds a socket (and, for a body, a request
task) for as long as it likes, and enough of them exhaust the server. This protocol gives each request
two deadlines, counted from when its phase begins, not reset by each byte (so a trickle does not help):
- head: the request line and headers must be complete within `head_timeout` seconds of the connection
  opening (or of the previous response ending, on a kept-alive connection);
- body: the whole body must be in within `body_timeout` seconds of the headers.
A client past a deadline is disconnected (a request being read sees a disconnect, as when a client goes
away). Connections past `max_connections` are answered 503 and closed at once. While the app computes
an answer no deadline runs: slow searches are the server's business, not the client's.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from avsearch.serve.config import ConnectionLimits

log = logging.getLogger(__name__)

_HEAD, _BODY = "head", "body"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b'content-length: 56\r\n\r\n{"error": "the server has too many connections; retry"}\n'
)


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """An H11Protocol class enforcing `limits` (uvicorn.run(..., http=<this>))."""

    class GuardedH11Protocol(_Guarded):
        pass

    GuardedH11Protocol.limits = limits
    return GuardedH11Protocol


class _Guarded(H11Protocol):
    limits: ConnectionLimits = ConnectionLimits()
    _phase: str | None = None
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning("refused a connection: %d open (max_connections)", len(self.connections) - 1)
            transport.write(_BUSY)
            transport.close()
            return
        self._follow()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._set(None)
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Start the deadline of the phase the connection is in (if it changed)."""
        if self.transport.is_closing():
            phase = None
        elif self.cycle is None or self.cycle.response_complete:
            phase = _HEAD  # waiting for (the rest of) a request's head
        elif self.conn.their_state is h11.SEND_BODY:
            phase = _BODY
        else:
            phase = None  # the request is in; the app is answering
        if phase != self._phase:
            self._set(phase)

    def _set(self, phase: str | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase
        if phase is not None:
            seconds = self.limits.head_timeout if phase == _HEAD else self.limits.body_timeout
            self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _expired(self, phase: str) -> None:
        if self._phase != phase or self.transport.is_closing():
            return
        self._deadline = None
        limit = self.limits.head_timeout if phase == _HEAD else self.limits.body_timeout
        log.info("closed a connection from %s: request %s not received within %g s", self.client, phase, limit)
        self.transport.close()  # a request being read then sees http.disconnect
