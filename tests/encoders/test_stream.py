"""embedding/stream.py: batches are encoded in order while the next batch decodes in worker threads; a
file that fails to decode costs only itself, with its reason; a bug in decoding surfaces.
(The encoder here is a test-only stand-in with the prepare/encode_prepared protocol.)"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from avsearch.embedding.stream import encode_batches
from avsearch.errors import DecodeError


class _Encoder:  # test-only: "decodes" a path to its number, "encodes" it as a one-hot row
    dim = 8

    def __init__(self, bad=(), bug=()) -> None:
        self.bad, self.bug = set(bad), set(bug)
        self.prepared: list[str] = []
        self.next_batch_started = threading.Event()
        self.wait_for: set[str] = set()

    def prepare(self, modality: str, path: Path) -> int:
        if path.name in self.bug:
            raise TypeError("a bug in our decoder")
        if path.name in self.bad:
            raise DecodeError(f"{path}: truncated")
        self.prepared.append(path.name)
        if self.wait_for and self.wait_for <= set(self.prepared):
            self.next_batch_started.set()
        return int(path.stem)

    def encode_prepared(self, modality: str, items: list[int]) -> np.ndarray:
        if self.wait_for and not self.next_batch_started.is_set():
            # the first batch is encoded only once the second one has been decoded meanwhile
            assert self.next_batch_started.wait(timeout=10), "the next batch did not decode during this one"
        return np.eye(self.dim, dtype=np.float32)[items]


def test_batches_in_order_with_the_next_one_decoding_meanwhile(tmp_path) -> None:
    enc = _Encoder(bad={"2.png"})
    batches = [[str(tmp_path / f"{i}.png") for i in range(0, 3)], [str(tmp_path / f"{i}.png") for i in range(3, 6)]]
    enc.wait_for = {"3.png", "4.png", "5.png"}
    results = list(encode_batches(enc, "image", batches))
    (ok0, v0, f0), (ok1, v1, f1) = results
    assert ok0 == [0, 1] and f0 == [(batches[0][2], "truncated")]
    assert ok1 == [0, 1, 2] and f1 == []
    np.testing.assert_array_equal(v0.argmax(1), [0, 1])
    np.testing.assert_array_equal(v1.argmax(1), [3, 4, 5])


def test_a_batch_of_only_bad_files_and_a_bug(tmp_path) -> None:
    enc = _Encoder(bad={"0.png", "1.png"})
    ((ok, vectors, failed),) = list(encode_batches(enc, "image", [[str(tmp_path / "0.png"), str(tmp_path / "1.png")]]))
    assert ok == [] and vectors.shape == (0, 8) and len(failed) == 2
    with pytest.raises(TypeError):
        list(encode_batches(_Encoder(bug={"0.png"}), "image", [[str(tmp_path / "0.png")]]))
