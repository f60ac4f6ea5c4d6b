"""`avsearch index --ray` on a real 2-node Ray cluster on this machine (one CPU and a 300 MB object store
per node, started by the test with the `ray` command and stopped after): the same report and, row by
row, the same tables as a local run, on a new folder (with a file name that is not UTF-8) and after
edits (touch, modify, delete, rename, a file that became undecodable); the work ran on both nodes; a
Ray run killed with SIGKILL is completed by the next; a worker that dies stops the run; a run prints
nothing about actor restarts and leaves the process's Ray Data settings as they were, also when it
raises. The test-only FAKE encoder
(tests/search/fake_encoder.py) runs on the workers, imported from the repository (the nodes have it on
PYTHONPATH)."""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install avsearch[ray])")
pytest.importorskip("lance_ray", reason="lance-ray is not installed (pip install avsearch[ray])")

import lance  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from avsearch.cli.app import app  # noqa: E402
from avsearch.indexing.distributed import index_folder_ray  # noqa: E402
from avsearch.indexing.pipeline import IndexSummary, index_folder  # noqa: E402
from avsearch.store.index import Index  # noqa: E402
from tests.indexing.ray_cluster import local_cluster, node_env  # noqa: E402
from tests.media.videos import make_video  # noqa: E402
from tests.search.conftest import make_bridge  # noqa: E402
from tests.search.fake_encoder import FakeLoader  # noqa: E402
from tests.search.kill_harness import snapshot  # noqa: E402
from tests.search.media_factory import make_media, write_audio, write_image  # noqa: E402

pytestmark = pytest.mark.slow
VECTORS = ("native", "proj_")  # column names (prefixes) compared with a tolerance; the rest exactly
REPORTED = ("scanned", "added", "unchanged", "touched", "renamed", "copied", "retagged", "removed", "ignored")


@pytest.fixture(scope="module")
def cluster() -> Any:
    with local_cluster(nodes=2) as address:
        yield address


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bridge(tmp_path_factory.mktemp("bridge") / "av.safetensors")


@pytest.fixture
def caller_settings(monkeypatch) -> Any:
    """This process's Ray Data settings set to values a run must leave as they are (the ones a run of the
    old code set process-wide); returns the check, to call after a run."""
    from ray.data import DataContext

    context = DataContext.get_current()
    known = {"enable_progress_bars": True, "raise_original_map_exception": False, "wait_for_min_actors_s": 7}
    for name, value in known.items():
        monkeypatch.setattr(context, name, value)
    monkeypatch.setattr(context.execution_options, "preserve_order", False)
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.INFO)
    printer = builtins.print

    def check() -> None:
        assert DataContext.get_current() is context
        assert {name: getattr(context, name) for name in known} == known
        assert context.execution_options.preserve_order is False and logger.level == logging.INFO
        assert builtins.print is printer  # Ray's tqdm_ray swaps it process-wide

    yield check
    logger.setLevel(level)


def table_rows(index: Path) -> dict[str, dict[str, dict]]:
    """table -> row key -> the row (every column), read straight from the Lance files; one row per key."""
    out = {}
    for d in sorted((index / "tables").glob("*.lance")):
        rows = lance.dataset(str(d)).to_table().to_pylist()
        out[d.name.removesuffix(".lance")] = {r["key"]: r for r in rows}
        assert len(out[d.name.removesuffix(".lance")]) == len(rows), f"{d.name}: a path has two rows"
    return out


def assert_same_index(local: Path, remote: Path) -> None:
    """The same tables row by row (vectors to 1e-6), the same failed files, FAISS builds up to date."""
    want, got = table_rows(local), table_rows(remote)
    assert sorted(got) == sorted(want)
    for table, rows in want.items():
        assert sorted(got[table]) == sorted(rows), f"{table}: other rows"
        for key, row in rows.items():
            other = got[table][key]
            for column, value in row.items():
                if column.startswith(VECTORS):
                    np.testing.assert_allclose(other[column], value, atol=1e-6, err_msg=f"{table} {column}")
                else:
                    assert other[column] == value, f"{table} {row['path']}: {column}"
    assert Index.open(remote).failed_files() == Index.open(local).failed_files()
    assert Index.open(remote).manifest.modalities == Index.open(local).manifest.modalities  # encoders recorded
    snapshot(remote)  # asserts every FAISS build is of the table's current version, over its paths


def report(summary: IndexSummary) -> dict[str, Any]:
    return {**{k: getattr(summary, k) for k in REPORTED}, "failed": sorted(summary.failed), "counts": summary.counts}


def test_ray_ingest_gives_the_local_index_first_and_after_changes(
    cluster, bridge, tmp_path, monkeypatch, capfd, caller_settings
) -> None:
    root = tmp_path / "media"
    made = make_media(root, images=6, audio=4)  # + 4 undecodable files, a text file, a symlink loop
    write_image(root / os.fsdecode(b"pictures/not-utf8-\xff\xfe.png"), seed=50)  # a name that is not UTF-8
    # a video: 3 frame rows (0-2, 2-4, 4-12 s) and 2 sound segments, one file; a text named .mp4: listed once
    (root / "clips").mkdir()
    make_video(root / "clips/walk.mp4", seconds=12, square=(2, 4), tone=(3, 5))
    (root / "clips/notes.mp4").write_text("not a film\n")
    local, remote = tmp_path / "local", tmp_path / "ray"
    first = index_folder(root, local, bridge, encoder_loader=FakeLoader(), batch_size=2)
    capfd.readouterr()
    on_ray = index_folder_ray(root, remote, cluster, bridges=bridge, encoder_loader=FakeLoader(), batch_size=2)
    err = capfd.readouterr().err  # file descriptor 2: Ray's own C++ lines too
    assert "restart" not in err, err  # was: Ray's error line about restarting each actor (ray issue 53727)
    caller_settings()
    assert report(on_ray) == report(first) and first.added == 12 and len(first.failed) == 5
    assert first.counts == {"image": 10, "audio": 6} and "clips/notes.mp4" in str(first.failed)
    assert_same_index(local, remote)
    # committed in batch order, as the local run wrote: the same row order (table_rows keeps it)
    assert {t: list(rows) for t, rows in table_rows(remote).items()} == {
        t: list(rows) for t, rows in table_rows(local).items()
    }
    # both nodes; a video counts in each of its tables
    assert len(on_ray.ray_nodes) == 2 and sum(on_ray.ray_nodes.values()) == 13, on_ray.ray_nodes

    img, aud = made["image"], made["audio"]
    os.utime(img[0], ns=(1, 1))  # touched: same content
    write_image(img[1], seed=999)  # modified: re-embedded, its old row replaced
    img[2].unlink()  # deleted
    img[3].rename(img[3].with_name("renamed.png"))  # renamed: vectors reused
    write_audio(root / "sounds/new.wav", seed=77)  # added
    aud[1].write_bytes(aud[1].read_bytes()[:30])  # now undecodable: listed, and its old row goes
    made["corrupt"][0].unlink()  # a bad file gone
    second = index_folder(root, local, encoder_loader=FakeLoader(), batch_size=2)
    assert (second.touched, second.renamed, second.added, second.removed) == (1, 1, 2, 1)
    # the same update through the command line (the workers get the loader the driver's index made)
    monkeypatch.setattr("avsearch.store.index.default_loader", lambda *a: FakeLoader())
    args = ["index", str(root), "--index-dir", str(remote), "--ray", cluster, "--batch-size", "2", "--json", "-q"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 3, done.output  # 3: some files could not be indexed
    cli = json.loads(done.stdout)
    assert {k: cli[k] for k in REPORTED} == {k: getattr(second, k) for k in REPORTED}
    assert sorted(f["path"] for f in cli["failed"]) == sorted(p for p, _ in second.failed)
    assert cli["counts"] == second.counts and sum(cli["ray_nodes"].values()) == 2  # the modified and the new file
    assert_same_index(local, remote)

    idle = index_folder_ray(root, remote, cluster, encoder_loader=FakeLoader())
    rows_per_file = sum(second.counts.values()) - 4  # the video: 5 rows, one file
    assert idle.added == 0 and idle.ray_nodes == {} and idle.unchanged == rows_per_file


KILLED_RUN = """
import sys
from avsearch.indexing.distributed import index_folder_ray
from tests.indexing.slow_encoder import SlowLoader
root, index, address, bridge = sys.argv[1:]
index_folder_ray(root, index, address, bridges=bridge, encoder_loader=SlowLoader(0.4), batch_size=1)
"""


def test_a_killed_ray_run_is_completed_by_the_next(cluster, bridge, tmp_path) -> None:
    root = tmp_path / "media"
    for i in range(12):
        write_image(root / f"img_{i:02d}.png", seed=i)
    for i in range(4):
        write_audio(root / f"snd_{i}.wav", seed=i)
    reference = tmp_path / "reference"
    index_folder(root, reference, bridge, encoder_loader=FakeLoader(), batch_size=1)
    index = tmp_path / "index"
    cmd = [sys.executable, "-c", KILLED_RUN, str(root), str(index), cluster, str(bridge)]
    proc = subprocess.Popen(cmd, env=node_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while _rows(index) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-3000:]
        proc.send_signal(signal.SIGKILL)  # the driver dies mid-run: some batches committed, others not
        proc.wait()
    finally:
        proc.kill()
    committed = _rows(index)
    assert 3 <= committed < 16, committed
    resumed = index_folder_ray(root, index, cluster, encoder_loader=FakeLoader(), batch_size=2)
    assert resumed.added == 16 - committed and resumed.unchanged == committed
    assert_same_index(reference, index)


def _rows(index: Path) -> int:
    """Rows committed so far over the index's tables (0 before they exist)."""
    total = 0
    for d in (index / "tables").glob("*.lance"):
        with contextlib.suppress(OSError, ValueError, RuntimeError):  # being created
            total += lance.dataset(str(d)).count_rows()
    return total


def test_a_worker_that_dies_stops_the_run(cluster, bridge, tmp_path) -> None:
    """Its process ends (a decoder crash, the OOM killer): Ray's error, not restarts and retries without end."""
    import ray

    from tests.indexing.crash_loader import CRASH, CrashLoader

    write_image(tmp_path / "m" / CRASH, seed=0)
    ended: list[BaseException] = []

    def run() -> None:
        try:
            index_folder_ray(tmp_path / "m", tmp_path / "i", cluster, bridges=bridge, encoder_loader=CrashLoader())
        except BaseException as exc:
            ended.append(exc)

    # The run in a thread, so a run that never ends fails the test; the connection is made here (a run
    # uses the caller's) and closed after, which also ends such a run.
    ray.init(address=cluster, logging_level="WARNING", log_to_driver=False)
    try:
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(timeout=120)
        assert not thread.is_alive(), "the run goes on after 120 s: the dead worker is restarted and retried"
    finally:
        ray.shutdown()
    assert len(ended) == 1 and isinstance(ended[0], ray.exceptions.RayActorError), ended


def test_an_avsearch_error_on_a_worker_is_one_line(cluster, bridge, tmp_path, monkeypatch, caller_settings) -> None:
    """Weights missing on a node: the worker's typed error, named in one line (exit 1), not a traceback."""
    from tests.indexing.broken_loader import MissingWeightsLoader

    write_image(tmp_path / "m" / "a.png", seed=0)
    monkeypatch.setattr("avsearch.store.index.default_loader", lambda *a: MissingWeightsLoader())
    args = ["index", str(tmp_path / "m"), "--index-dir", str(tmp_path / "i"), "--bridge", str(bridge)]
    done = CliRunner().invoke(app, [*args, "--ray", cluster, "-q"])
    assert done.exit_code == 1, done.output
    assert done.stderr == "avsearch: error: clip-vit-b-32-openai: weights not found in /nowhere on this node\n"
    caller_settings()  # as they were, also after a run that raised
