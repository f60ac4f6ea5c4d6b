"""A weight download inside the CLI's rich progress bars draws its own bar in place on stderr.

In a terminal the bars (a rich live display) take stderr over and print what others write there above
them, a line at each flush: a download's bar, redrawn with a carriage return, came out as a new line for
each redraw. The display now steps aside while a file downloads (cli/live_progress.py). The console here
says it is a terminal, which is what makes rich take stderr over.
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.progress import TextColumn

from avsearch.cli.live_progress import progress_bars
from avsearch.encoders import weights
from tests.encoders.test_weights_download import FAST, Route, Server, _bytes, _file, _server, server  # noqa: F401


def test_a_download_inside_the_bars_redraws_its_own_line_on_stderr(
    server: Server,  # noqa: F811 (the fixture imported above)
    capsys: pytest.CaptureFixture,
) -> None:
    screen = Console(file=io.StringIO(), force_terminal=True, width=100)
    wf = _file(server, "/in-place", Route(_bytes(5)))
    with progress_bars(TextColumn("{task.description}"), console=screen) as bars:
        bars.add_task("embedding", total=1)
        weights.download(wf, settings=FAST, progress=True)
        assert bars.live.is_started  # drawn again after the download
    stderr, shown = capsys.readouterr().err, screen.file.getvalue()
    assert "in-place.pt" in stderr and "300k/300k" in stderr and "\r" in stderr  # one line, redrawn
    assert "in-place.pt" not in shown and "embedding" in shown  # none of it printed through the display
