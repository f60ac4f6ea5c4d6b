"""embedding/stream.py: batches are encoded in order while the next ones decode, in worker threads or
worker processes (the GPU feed); a file that fails to decode costs only itself, with its reason; a bug
in decoding surfaces. (The `_Encoder` here is a test-only stand-in with the preparer/encode_prepared
protocol; the last test runs the real CLIP architecture with random weights.)"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avsearch.embedding import stream
from avsearch.embedding.stream import DecodePlan, encode_batches, plan_decode
from avsearch.errors import ConfigError, DecodeError

THREADS = DecodePlan("threads", 2, 2)
PROCESSES = DecodePlan("processes", 2, 2)


class _Prepare:  # test-only: "decodes" a path to its number (module level, so worker processes can run it)
    def __init__(self, bad=(), bug=(), seen=None) -> None:
        self.bad, self.bug, self.seen = set(bad), set(bug), seen

    def __call__(self, path: Path) -> int:
        if path.name in self.bug:
            raise TypeError("a bug in our decoder")
        if path.name in self.bad:
            raise DecodeError(f"{path}: truncated")
        if self.seen is not None:
            self.seen(path.name)
        return int(path.stem)


class _Encoder:  # test-only: encodes the number n as the one-hot row n
    dim = 32
    device = "cpu"

    def __init__(self, bad=(), bug=(), wait_for=()) -> None:
        self.bad, self.bug = bad, bug
        self.prepared: list[str] = []
        self.wait_for = set(wait_for)
        self.ahead = threading.Event()
        self.encoded: list[list[int]] = []

    def _seen(self, name: str) -> None:
        self.prepared.append(name)
        if self.wait_for and self.wait_for <= set(self.prepared):
            self.ahead.set()

    def preparer(self, modality: str) -> _Prepare:
        return _Prepare(self.bad, self.bug, self._seen if self.wait_for else None)

    def encode_prepared(self, modality: str, items: list[int]) -> np.ndarray:
        if self.wait_for and not self.encoded:
            # the first batch is encoded only once the batches after it have been decoded meanwhile
            assert self.ahead.wait(timeout=10), "the next batches did not decode during this one"
        self.encoded.append(list(items))
        return np.eye(self.dim, dtype=np.float32)[items]


def _batches(tmp_path: Path, sizes: list[int]) -> list[list[str]]:
    out, n = [], 0
    for size in sizes:
        out.append([str(tmp_path / f"{i}.png") for i in range(n, n + size)])
        n += size
    return out


def test_batches_in_order_with_the_next_ones_decoding_meanwhile(tmp_path) -> None:
    batches = _batches(tmp_path, [3, 3, 2])
    # prefetch 2: batches 2 and 3 are decoded while batch 1 is encoded
    enc = _Encoder(bad={"2.png"}, wait_for={"3.png", "4.png", "5.png", "6.png", "7.png"})
    results = list(encode_batches(enc, "image", batches, THREADS))
    (ok0, v0, f0), (ok1, v1, f1), (ok2, v2, f2) = results
    assert ok0 == [0, 1] and f0 == [(batches[0][2], "truncated")]
    assert ok1 == [0, 1, 2] and f1 == [] and ok2 == [0, 1]
    np.testing.assert_array_equal(v0.argmax(1), [0, 1])
    np.testing.assert_array_equal(v1.argmax(1), [3, 4, 5])
    np.testing.assert_array_equal(v2.argmax(1), [6, 7])


def test_worker_processes_give_what_threads_give(tmp_path) -> None:
    batches = _batches(tmp_path, [5, 4, 1, 6, 3])
    bad = {"4.png", "9.png", "10.png"}  # the last of one batch, a whole batch of one, one in the middle
    threads = list(encode_batches(_Encoder(bad=bad), "image", batches, THREADS))
    processes = list(encode_batches(_Encoder(bad=bad), "image", batches, PROCESSES))
    assert len(processes) == len(batches)
    for (ok_t, v_t, f_t), (ok_p, v_p, f_p) in zip(threads, processes, strict=True):
        assert ok_p == ok_t and f_p == f_t
        np.testing.assert_array_equal(v_p, v_t)
    assert [f for _, _, fs in processes for f, _ in fs] == [str(tmp_path / n) for n in ("4.png", "9.png", "10.png")]
    assert np.concatenate([v for _, v, _ in processes]).argmax(1).tolist() == [
        i for i in range(19) if f"{i}.png" not in bad
    ]


@pytest.mark.parametrize("plan", [THREADS, PROCESSES], ids=["threads", "processes"])
def test_a_batch_of_only_bad_files_and_a_bug(tmp_path, plan) -> None:
    enc = _Encoder(bad={"0.png", "1.png"})
    ((ok, vectors, failed),) = list(encode_batches(enc, "image", _batches(tmp_path, [2]), plan))
    assert ok == [] and vectors.shape == (0, 32) and len(failed) == 2
    with pytest.raises(TypeError, match="a bug in our decoder"):  # raised in the worker, surfaces here
        list(encode_batches(_Encoder(bug={"1.png"}), "image", _batches(tmp_path, [2, 2]), plan))


def test_the_decode_plan(monkeypatch) -> None:
    cpu, gpu = _Encoder(), _Encoder()
    gpu.device = "cuda:0"
    monkeypatch.setattr(stream.os, "cpu_count", lambda: 16)
    assert plan_decode(cpu, 100) == DecodePlan("threads", 2, 2)  # the model needs the CPU
    assert plan_decode(gpu, 100) == DecodePlan("processes", 15, 2)  # the GPU needs feeding
    assert plan_decode(gpu, 3).mode == "threads"  # too short a run to start processes
    assert plan_decode(gpu, 100, "threads", 8, 4) == DecodePlan("threads", 8, 4)
    monkeypatch.setattr(stream.os, "cpu_count", lambda: 2)
    assert plan_decode(gpu, 100).mode == "threads"
    assert plan_decode(cpu, 100, "processes") == DecodePlan("processes", 1, 2)
    with pytest.raises(ConfigError, match="decode mode 'gpu'"):
        plan_decode(cpu, 1, "gpu")


def test_real_clip_batches_from_worker_processes(tmp_path, av_weights_dir) -> None:
    """CLIP (real architecture, random weights): uint8 crops decoded in worker processes and scaled per
    batch give the vectors of the whole upstream transform run file by file."""
    import torch

    from avsearch.encoders.registry import load_encoder

    clip = load_encoder("clip-vit-b-32-openai", ["image"], weights_dir=av_weights_dir, device="cpu")
    rng = np.random.default_rng(0)
    files = []
    for i in range(7):  # odd, non-square sizes: both the resize and the centre crop matter
        pixels = rng.integers(0, 255, size=(64 + 9 * i, 97 + 23 * i, 3), dtype=np.uint8)
        files.append(str(tmp_path / f"{i}.jpg"))
        Image.fromarray(pixels).save(files[-1])
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    batches = [files[:3], [str(tmp_path / "bad.jpg"), *files[3:5]], files[5:]]
    got = list(encode_batches(clip, "image", batches, PROCESSES))
    assert [ok for ok, _, _ in got] == [[0, 1, 2], [1, 2], [0, 1]]
    assert [p for _, _, fs in got for p, _ in fs] == [str(tmp_path / "bad.jpg")]
    reference = torch.stack([clip.preprocess(Image.open(f)) for f in files])
    want = clip.encode_pixels(reference)
    np.testing.assert_allclose(np.concatenate([v for _, v, _ in got]), want, atol=1e-5)
