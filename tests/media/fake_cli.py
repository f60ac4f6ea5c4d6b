"""Test-only child process: run avsearch commands with the test-only FAKE encoders (tests/search/
fake_encoder.py: avsearch's real decoders, no model) and print one JSON line per command: exit code,
stdout, stderr, an exception that escaped the CLI (a traceback, not a one-line error) and how far the
command raised the peak RSS.

`python -m tests.media.fake_cli '[["index", "DIR", ...], ["query", ...]]'`: the commands run one after
another in this process, so Python, torch and LanceDB load once for all of them.
"""

from __future__ import annotations

import json
import sys

from tests.media.decode_probe import _reset_peak, _status_mb


def main(commands: list[list[str]]) -> None:
    import avsearch.encoders.registry as registry
    from tests.search.fake_encoder import FakeLoader

    fake = FakeLoader()
    # index, query and embed all reach their models through this function (embedding/models.py, pipeline)
    registry.load_encoder = lambda name, towers, weights_dir=None, device=None: fake(name, tuple(towers))

    from typer.testing import CliRunner

    from avsearch.cli.app import app

    print(json.dumps({"baseline_mb": _status_mb("VmRSS")}), flush=True)
    for args in commands:
        print(json.dumps({"start": args}), flush=True)
        _reset_peak()
        before = _status_mb("VmRSS")
        result = CliRunner().invoke(app, args)
        escaped = None if result.exception is None or isinstance(result.exception, SystemExit) else result.exception
        row = {
            "args": args,
            "exit_code": result.exit_code,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "exception": None if escaped is None else f"{type(escaped).__name__}: {escaped}",
            "growth_mb": _status_mb("VmHWM") - before,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
