"""Rich progress bars on stderr that step aside while a weight file downloads.

In a terminal a rich live display takes stderr over: what others write there is printed above the display,
a line at each flush. A download's own bar (tqdm in encoders/fetch.py, huggingface_hub's) redraws its line
with a carriage return and a flush, so inside the display every redraw came out as a new line. Here the
display is erased while a file downloads (the download draws its bar in place on the real stderr) and
drawn again after it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import Progress, ProgressColumn

from avsearch.cli import common


@contextmanager
def progress_bars(*columns: str | ProgressColumn, **options: Any) -> Iterator[Progress]:
    """A started rich Progress (`columns` and `options` as Progress takes them; console: stderr's) that
    pauses for every weight download inside the block."""
    from avsearch.encoders.weights import around_downloads

    bars = Progress(*columns, **{"console": common.err, **options})
    with bars, around_downloads(_StepAside(bars)):
        yield bars


class _StepAside:
    """Called for each download: the display off while any download runs (downloads may overlap in threads)."""

    def __init__(self, bars: Progress) -> None:
        self.bars = bars
        self.running = 0
        self.lock = threading.Lock()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        # Only a terminal's display takes stderr over; elsewhere a pause would only add blank lines.
        if self.bars.disable or not self.bars.console.is_terminal:
            yield
            return
        with self.lock:
            self.running += 1
            if self.running == 1:
                live = self.bars.live
                kept, live.transient = live.transient, True  # erased, not left above the download's bar
                self.bars.stop()
                live.transient = kept
        try:
            yield
        finally:
            with self.lock:
                self.running -= 1
                if self.running == 0:
                    self.bars.start()
