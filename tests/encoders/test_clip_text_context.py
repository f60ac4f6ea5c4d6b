"""CLIP text encoding runs the text tower only up to the batch's last end-of-text token (issue 25).

The real ViT-B/32 text tower (open_clip, random weights: tests/weights_factory.py) is causal and pooled
at the EOT token, so cutting the padding after the batch's furthest EOT must leave every vector as the
77-token forward gives it (up to float rounding: measured max |diff| ~2e-7 on unit vectors, cosine
>= 0.9999998). Checked against upstream's own `encode_text` at full context: the bare forward on a
mixed-length batch, encode_text on mixed lengths up to the full 77 tokens (sorted into batches of
different lengths, output in input order) and one short prompt; and, by a hook on the transformer,
that the encode path really runs the shortened length (a regression to 77 tokens fails here).
Random-weight CLIP text vectors of different texts are close to each other, so rows are compared
element-wise (1e-5), not by cosine alone, and the texts are checked to differ by far more than that.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from avsearch.encoders.clip import encode_text_tokens, text_pool_positions
from avsearch.encoders.registry import load_encoder

ATOL = 1e-5
MIN_COS = 0.999999
MIXED = [
    "a",
    "a photo of a dog.",
    "There is a large wooden bookshelf standing in the corner of the living room.",
    "a point cloud model of a chair.",
    "rain on a tin roof at night, heard from the attic while a kettle starts to whistle downstairs",
    "itap of my car.",
]
FULL = "word " * 200  # tokenised to the full 77 tokens (EOT at the last position)


@pytest.fixture(scope="module")
def clip(clip_weights_dir: Path):
    return load_encoder("clip-vit-b-32-openai", ["text"], weights_dir=clip_weights_dir, device="cpu")


@contextmanager
def seen_lengths(clip) -> Iterator[list[int]]:
    """The sequence length of every batch the text transformer runs (batch-first: x is (N, L, width))."""
    lengths: list[int] = []
    handle = clip._model.transformer.register_forward_pre_hook(lambda _m, args: lengths.append(args[0].shape[1]))
    try:
        yield lengths
    finally:
        handle.remove()


def _unit(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), dim=-1).numpy()


def _assert_same(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= ATOL
    cos = (got.astype(np.float64) * ref).sum(axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert float(cos.min()) >= MIN_COS


def test_trimmed_forward_equals_upstream_full_context(clip) -> None:
    tokens = clip.tokenizer(MIXED)
    assert tokens.shape == (len(MIXED), 77)
    ends = text_pool_positions(clip._model, tokens) + 1
    assert int(ends.min()) == 3 and int(ends.max()) < 30  # mixed lengths, all far below 77
    with torch.inference_mode():
        ref = clip._model.encode_text(tokens)  # upstream open_clip, 77 positions
        with seen_lengths(clip) as lengths:
            got = encode_text_tokens(clip._model, tokens)
    assert lengths == [int(ends.max())]
    ref_unit = _unit(ref)
    assert np.abs(ref_unit[:, None] - ref_unit[None]).max(axis=-1)[~np.eye(len(MIXED), dtype=bool)].min() > 1e-3
    _assert_same(_unit(got), ref_unit)
    assert torch.allclose(got, ref, atol=1e-4, rtol=1e-4)  # the unnormalised outputs too


def test_encode_text_mixed_lengths_up_to_77_tokens(clip, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 2 sorted by length: each batch is cut to its own length; rows come back in input order."""
    texts = [MIXED[2], FULL, MIXED[0], MIXED[4], MIXED[1], MIXED[3], MIXED[5]]
    monkeypatch.setattr(clip, "text_batch", 2)
    full = clip.encode_text(texts, full_context=True)
    with seen_lengths(clip) as lengths:
        got = clip.encode_text(texts)
    ends = sorted(int(e) + 1 for e in text_pool_positions(clip._model, clip.tokenizer(texts)))
    assert lengths == [max(ends[i : i + 2]) for i in range(0, len(ends), 2)]
    assert lengths[-1] == 77 and lengths[0] < 10  # the full-length prompt runs alone at 77 tokens
    _assert_same(got, full)


def test_encode_text_one_short_prompt(clip) -> None:
    full = clip.encode_text(["a dog"], full_context=True)
    with seen_lengths(clip) as lengths:
        got = clip.encode_text(["a dog"])
    assert lengths == [4]  # start, "a", "dog", end
    _assert_same(got, full)


def test_default_paths_run_the_shortened_length(clip) -> None:
    """encode_text (queries, captions, classify3d prompts) runs the batch's length, full_context 77."""
    prompts = [
        t.format("chair") for t in ("a point cloud model of {}.", "itap of a {}.", "There is a {} in the scene.")
    ]
    with seen_lengths(clip) as lengths:
        clip.encode_text(prompts)
        clip.encode_text(prompts, full_context=True)
    assert lengths == [10, 77]  # <start> there is a chair in the scene . <end>
