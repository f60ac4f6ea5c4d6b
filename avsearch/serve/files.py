"""The files the server reads for an item (media, thumbnails, localisation): only the file that was indexed.

A row records the path a file was walked by, its size and mtime. Between indexing and a request the path
may have been swapped for a link to /etc/passwd, for a FIFO, or for another picture; the server must not
read any of those. So, before a byte is read:
- the path, links resolved, must lie inside one of the index's roots (unless the index follows links
  anywhere: configs/search.toml [ingest] follow_symlinks = "anywhere");
- it must be a regular file (a FIFO is never opened);
- its size must equal the row's, and its mtime too, or else its content hash (a touched-but-unchanged
  file is served; a changed one is 409 "changed since indexing").
The file is opened once, without following a link, and the checks are made on the open descriptor.
Its bytes are sent through that descriptor (/proc/self/fd/N on Linux), so a swap between the check and
the read changes nothing. Decoders (thumbnails, localisation) read `real`, the resolved path just
checked, because some formats are told by their name (.xyz, .obj): a swap inside that window yields at
most a derived picture, never the bytes of another file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from avsearch.indexing.hashing import content_hash
from avsearch.media.walk import ANYWHERE, is_inside, printable
from avsearch.serve.errors import ChangedSinceIndexing, NotFound
from avsearch.store.table_schema import FileRecord

_PROC_FD = Path("/proc/self/fd")


class IndexedFile:
    """An item's file, open and checked against its row. `path` reads the open file (close when done)."""

    def __init__(self, fd: int, name: str, st: os.stat_result, real: str) -> None:
        self.fd = fd
        self.name = name  # the file name as indexed (printable), for Content-Disposition
        self.stat = st
        self.real = Path(real)  # the resolved path, as checked (what decoders read: see the module doc)
        # /proc/self/fd/N opens the very file this descriptor holds, whatever the path names by now;
        # without /proc (not Linux) the resolved path, checked a moment ago, is the best there is.
        self.path = _PROC_FD / str(fd) if _PROC_FD.is_dir() else self.real

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> IndexedFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def open_indexed_file(record: FileRecord, roots: Sequence[str], follow_symlinks: str) -> IndexedFile:
    """The item's file, opened and checked as the module says; NotFound (404) or ChangedSinceIndexing
    (409) without reading a byte of any other file."""
    shown = printable(record.path)
    gone = NotFound(f"{shown}: the file of this item is not on disk (moved, deleted, or never was)")
    real = os.path.realpath(record.path)
    if follow_symlinks != ANYWHERE and not is_inside(real, roots):
        raise NotFound(f"{shown}: the file of this item now lies outside the indexed folders; not served")
    try:
        before = os.stat(real)  # no open yet: opening a FIFO could block
    except OSError:
        raise gone from None
    if not stat.S_ISREG(before.st_mode):
        raise NotFound(f"{shown}: the file of this item is no longer a regular file; not served")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise gone from None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(st.st_mode):
            raise NotFound(f"{shown}: the file of this item changed while it was opened; not served")
        opened = IndexedFile(fd, os.path.basename(shown), st, real)
    except BaseException:
        os.close(fd)
        raise
    try:
        _check_unchanged(opened, record, shown)
    except BaseException:
        opened.close()
        raise
    return opened


def _check_unchanged(opened: IndexedFile, record: FileRecord, shown: str) -> None:
    """The open file is the row's: same size, and same mtime or same content."""
    changed = ChangedSinceIndexing(f"{shown}: the file changed since it was indexed (run avsearch index again)")
    if opened.stat.st_size != record.size:
        raise changed  # never read: it is not the indexed file
    if opened.stat.st_mtime_ns == record.mtime_ns:
        return
    if not record.hash or content_hash(opened.path) != record.hash:
        raise changed


class IndexedFileResponse(FileResponse):
    """A FileResponse (Range requests included) that reads an IndexedFile and closes it when sent."""

    def __init__(self, opened: IndexedFile, **kwargs: Any) -> None:
        super().__init__(opened.path, stat_result=opened.stat, **kwargs)
        self.opened = opened

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # No "pathsend": the server would open the path after this returns, when the descriptor is closed.
        extensions = {k: v for k, v in scope.get("extensions", {}).items() if k != "http.response.pathsend"}
        try:
            await super().__call__({**scope, "extensions": extensions}, receive, send)
        finally:
            self.opened.close()
