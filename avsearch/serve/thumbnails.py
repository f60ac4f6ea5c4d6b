"""Thumbnails: pictures scaled down, point clouds drawn as a small depth-shaded picture, sounds as their
waveform, a video moment as its frame at the moment's start (a long recording's moment: the waveform of
its stretch); JPEG, made once.

Files are decoded by avsearch's own readers (media/image.py, media/pointcloud.py, media/video_frame.py),
so the decoding limits of configs/media.toml hold here as they do for indexing. A thumbnail is cached
under the index's cache folder, named by item id (a moment's id is its own: path and start), file size,
file mtime and thumbnail size: a file changed on disk gets a new one (the old one is removed), an
unchanged file is never decoded twice.
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
from pathlib import Path

from PIL import Image

from avsearch.atomic import write_bytes
from avsearch.media.audio import load_audio
from avsearch.media.detect import detect_kind
from avsearch.media.image import load_image
from avsearch.media.pointcloud import load_pointcloud
from avsearch.media.preview import render_cloud, render_waveform
from avsearch.media.video_frame import moment_picture
from avsearch.modalities import AUDIO, IMAGE, POINTCLOUD, VIDEO
from avsearch.serve.errors import NotFound
from avsearch.serve.files import IndexedFile

log = logging.getLogger(__name__)

DEFAULT_SIZE = 256  # px, the longer side
WAVEFORM_RATE = 8000  # Hz a sound is decoded at for its waveform: 256 columns need no more
_QUALITY = 85


class Thumbnails:
    """The thumbnail cache of one index (`folder`; a temporary folder when None)."""

    def __init__(self, folder: Path | None, size: int = DEFAULT_SIZE) -> None:
        if folder is None:
            folder = Path(tempfile.mkdtemp(prefix="avsearch-thumbnails-"))
            log.warning("the index folder is read-only: thumbnails are cached in %s for this run", folder)
        self.folder = folder
        self.size = size
        self.rendered = 0  # thumbnails made by this process (the cache serves the rest)
        self._lock = threading.Lock()

    def get(
        self, item_id: str, modality: str, opened: IndexedFile, start: float | None = None, end: float | None = None
    ) -> Path:
        """The cached JPEG of the item (id already checked: hex digits only) whose file is `opened`;
        start/end: the item's moment (seconds; None for a whole file)."""
        if modality not in (IMAGE, POINTCLOUD, AUDIO):
            raise NotFound(f"no thumbnail for {modality} items")
        st, path = opened.stat, opened.real
        shard = self.folder / item_id[:2]
        target = shard / f"{item_id}-{st.st_size}-{st.st_mtime_ns}-{self.size}.jpg"
        if target.is_file():
            return target
        if modality != POINTCLOUD and (start is not None or detect_kind(path) == VIDEO):
            picture = moment_picture(path, start, end, self.size)  # a video's frame, a recording's stretch
        elif modality == IMAGE:
            picture = load_image(path)
        elif modality == POINTCLOUD:
            picture = render_cloud(load_pointcloud(path), self.size)
        else:  # a sound: its waveform, so a page of sounds can be told apart at a glance
            picture = render_waveform(load_audio(path, WAVEFORM_RATE), self.size)
        picture.thumbnail((self.size, self.size), Image.Resampling.LANCZOS, reducing_gap=3.0)
        data = io.BytesIO()
        picture.save(data, format="JPEG", quality=_QUALITY)
        with self._lock:  # atomic writes use one temporary name per process: one writer at a time
            for old in shard.glob(f"{item_id}-*"):  # the file changed: its earlier thumbnails are of no use
                old.unlink(missing_ok=True)
            write_bytes(target, data.getvalue())
            self.rendered += 1
        return target
