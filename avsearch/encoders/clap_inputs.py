"""CLAP's text tokens made without torch or transformers, for the ONNX query path: RoBERTa's byte-level
BPE from the same vocab.json + merges.txt through the `tokenizers` library, with RoBERTa's <s> ... </s>
framing, truncation and padding to the context length: what ClapEncoder._tokens gets from transformers'
RobertaTokenizer (padding="max_length", truncation=True), compared in tests/encoders/test_onnx_towers.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class ClapTokenizer:
    """texts -> (input_ids, attention_mask), each (N, context_length) int64."""

    SPECIAL = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

    def __init__(self, vocab: Path, merges: Path, context_length: int = 77) -> None:
        from tokenizers import ByteLevelBPETokenizer
        from tokenizers.processors import RobertaProcessing

        tok = ByteLevelBPETokenizer(str(vocab), str(merges), add_prefix_space=False, trim_offsets=True)
        tok.add_special_tokens(list(self.SPECIAL))
        bos, eos, pad = (tok.token_to_id(t) for t in ("<s>", "</s>", "<pad>"))
        tok.post_processor = RobertaProcessing(("</s>", eos), ("<s>", bos), trim_offsets=True, add_prefix_space=False)
        tok.enable_truncation(context_length)
        tok.enable_padding(length=context_length, pad_id=pad, pad_token="<pad>")
        self._tok = tok

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = self._tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        return ids, mask
