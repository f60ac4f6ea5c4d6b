"""The one bad-file policy (media/failures.py): decode errors name the file and cost only that file;
any other exception is a bug and surfaces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avsearch.errors import DecodeError
from avsearch.media.failures import encode_each


def _encoder(bad: set[str], bug: set[str] = frozenset()):  # type: ignore[assignment]
    calls: list[list[str]] = []

    def encode(files: list[Path]) -> np.ndarray:
        calls.append([f.name for f in files])
        for f in files:
            if f.name in bad:
                raise DecodeError(f"{f}: corrupt or truncated image (broken data stream)")
            if f.name in bug:
                raise KeyError("a bug in our code")
        return np.array([[float(f.stem)] * 2 for f in files], np.float32)

    return encode, calls


def test_a_bad_file_costs_only_itself_with_its_reason(tmp_path) -> None:
    paths = [str(tmp_path / f"{i}.png") for i in range(4)]
    encode, calls = _encoder({"2.png"})
    ok, vectors, failed = encode_each(encode, paths, dim=2)
    assert ok == [0, 1, 3]
    np.testing.assert_array_equal(vectors[:, 0], [0, 1, 3])
    assert failed == [(paths[2], "corrupt or truncated image (broken data stream)")]
    assert calls[0] == ["0.png", "1.png", "2.png", "3.png"]  # one batch first, then file by file


def test_a_good_batch_is_encoded_once(tmp_path) -> None:
    encode, calls = _encoder(set())
    ok, vectors, failed = encode_each(encode, [tmp_path / "5.png", tmp_path / "6.png"], dim=2)
    assert (ok, failed, len(calls)) == ([0, 1], [], 1) and vectors.shape == (2, 2)


def test_a_bug_is_not_a_bad_file(tmp_path) -> None:
    encode, _ = _encoder(set(), bug={"1.png"})
    with pytest.raises(KeyError):
        encode_each(encode, [tmp_path / "0.png", tmp_path / "1.png"], dim=2)
