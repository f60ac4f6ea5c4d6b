"""kill -9 in the middle of a long video's ingest (issue 27): the video's frames are encoded a chunk of
moments at a time ([ingest] moment_chunk 4 here: 20 frame rows, 5 chunks) by a slowed FAKE encoder; the
run is killed with SIGKILL once two of its chunks were encoded, then run again, and the index must equal an
uninterrupted run's row by row and vector by vector (tests/search/kill_harness.py's snapshot, FAISS builds
checked against their tables). A file's moments go in one commit, so the killed run left none of them."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from avsearch.indexing.pipeline import index_folder
from avsearch.store.config import IngestConfig, SearchConfig
from avsearch.store.index import Index
from tests.media.videos import H, W, encode_frames
from tests.search.fake_encoder import FakeLoader
from tests.search.kill_harness import child_env, snapshot
from tests.search.media_factory import write_image

pytestmark = pytest.mark.slow  # two child processes (killed, resumed) and an index in-process

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 4
SECONDS = 20
CHILD = """
import sys
sys.path.insert(0, {root!r})
from avsearch.indexing.pipeline import index_folder
from avsearch.store.config import IngestConfig, SearchConfig
from tests.indexing.slow_encoder import SlowLoader

class Said:
    # progress lines on stdout: the parent kills the run when the video's chunks are under way
    def start(self, stage, total):
        print("start", stage, flush=True)
    def advance(self, stage, n=1):
        print("advance", stage, n, flush=True)
    def finish(self, stage):
        print("finish", stage, flush=True)

config = SearchConfig(ingest=IngestConfig(moment_chunk={chunk}, batch_size=1))
index_folder(sys.argv[1], sys.argv[2], sys.argv[3], encoder_loader=SlowLoader(0.05), config=config, progress=Said())
print("done", flush=True)
"""


def _colours(path: Path, seconds: int = SECONDS, fps: int = 2) -> Path:
    """A video with a new colour every second (no two consecutive seconds alike): one frame row a second."""
    rng = np.random.default_rng(7)
    colours = rng.integers(0, 256, (seconds, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        encode_frames(out, stream, (np.broadcast_to(colours[i // fps], (H, W, 3)).copy() for i in range(seconds * fps)))
    return path


def _run(media: Path, index: Path, bridge: Path) -> subprocess.Popen:
    code = CHILD.format(root=str(ROOT), chunk=CHUNK)
    args = [sys.executable, "-c", code, str(media), str(index), str(bridge)]
    return subprocess.Popen(args, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_during_a_long_videos_chunks_then_resume_gives_the_uninterrupted_index(tmp_path, bridge_file) -> None:
    media = tmp_path / "media"
    media.mkdir()
    video = _colours(media / "walk.mp4")
    for seed in (1, 2):
        write_image(media / f"pic{seed}.png", seed=seed)
    config = SearchConfig(ingest=IngestConfig(moment_chunk=CHUNK, batch_size=1))  # the child's, unslowed
    # one thread, as the children run (child_env): on some CPUs (AVX-512/AMX) a bridge's matrix products
    # differ in their last bits between thread counts, and the index must equal the children's bit for bit
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        index_folder(media, tmp_path / "ref", bridge_file, encoder_loader=FakeLoader(), config=config)
    finally:
        torch.set_num_threads(threads)
    want = snapshot(tmp_path / "ref")
    frames = [key for key in want["image"] if key[0] == str(video)]
    assert len(frames) == SECONDS  # 5 chunks of 4

    killed = _run(media, tmp_path / "index", bridge_file)
    encoded = 0
    for line in killed.stdout:  # type: ignore[union-attr]
        if line.startswith(f"advance embed image: {video.name} "):
            encoded += int(line.split()[-1])
            if encoded >= 2 * CHUNK:
                killed.send_signal(signal.SIGKILL)
                break
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL and encoded == 2 * CHUNK, (killed.returncode, encoded)
    tables = Index.open(tmp_path / "index").tables
    assert str(video) not in tables.bookkeeping("image")  # its frames were not committed: none of them
    assert len(tables.bookkeeping("image")) <= 2  # the pictures, committed or not

    resumed = _run(media, tmp_path / "index", bridge_file)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and out.endswith("done\n"), err
    assert snapshot(tmp_path / "index") == want
