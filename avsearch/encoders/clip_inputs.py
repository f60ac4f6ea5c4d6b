"""CLIP's inputs made without torch, for the ONNX query path (encoders/onnx_towers.py): the tokens of
open_clip's SimpleTokenizer and the pixels of its evaluation transform, value for value.

- Tokens: open_clip/tokenizer.py's SimpleTokenizer with its default "lower" cleaning (ftfy, HTML
  unescape, whitespace, lower case) and byte-level BPE over open_clip's own vocabulary file, found in
  the installed open_clip package without importing it; sot + tokens + eot, truncated to the context
  with eot last, zero-padded. open_clip's code imports torch at module level, hence this copy (MIT
  licence, the OpenAI CLIP tokenizer); tests compare it with open_clip's on many texts.
- Pixels: torchvision's Resize(shortest side, bicubic) and CenterCrop on the PIL image (the same PIL
  calls torchvision makes), then ToTensor + Normalize in float32 (x / 255 - mean) / std.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    return set(zip(word[:-1], word[1:], strict=True))


def open_clip_vocabulary() -> Path:
    """open_clip's bpe_simple_vocab_16e6.txt.gz, located without importing open_clip (which imports torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("open_clip is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"


class ClipTokenizer:
    """open_clip.tokenizer.SimpleTokenizer(clean="lower"), returning int64 numpy arrays."""

    SPECIAL = ("<start_of_text>", "<end_of_text>")

    def __init__(self, context_length: int = 77, bpe_path: Path | None = None) -> None:
        import regex

        self.byte_encoder = _bytes_to_unicode()
        with gzip.open(bpe_path or open_clip_vocabulary()) as fh:
            lines = fh.read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + list(self.SPECIAL)
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {t: t for t in self.SPECIAL}
        self.pat = regex.compile(
            "|".join(self.SPECIAL) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self.sot, self.eot = (self.encoder[t] for t in self.SPECIAL)
        self.context_length = context_length

    def _bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word: tuple[str, ...] = (*token[:-1], token[-1] + "</w>")
        pairs = _pairs(word)
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = _pairs(word)
        joined = " ".join(word)
        self.cache[token] = joined
        return joined

    @staticmethod
    def _clean(text: str) -> str:
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return " ".join(text.split()).strip().lower()

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for token in self.pat.findall(self._clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            out.extend(self.encoder[t] for t in self._bpe(token).split(" "))
        return out

    def __call__(self, texts: list[str]) -> np.ndarray:
        """(N, context_length) int64: sot, tokens, eot, zeros; truncated with eot as the last token."""
        result = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for i, text in enumerate(texts):
            tokens = [self.sot, *self.encode(text), self.eot]
            if len(tokens) > self.context_length:
                tokens = tokens[: self.context_length]
                tokens[-1] = self.eot
            result[i, : len(tokens)] = tokens
        return result


def prepare_image(image: object, size: int, interpolation: str) -> np.ndarray:
    """torchvision Resize(size) (shortest side) + CenterCrop(size) on a PIL image -> (3, size, size) uint8."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_h, new_w) != (h, w):
        resample = Image.BILINEAR if interpolation == "bilinear" else Image.BICUBIC
        image = image.resize((new_w, new_h), resample)
    w, h = image.size
    if size > w or size > h:  # CenterCrop pads with zeros (a side below `size` cannot happen after Resize)
        raise ValueError(f"image of {w}x{h} after resizing to {size}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def normalize_pixels(items: list[np.ndarray], mean: tuple, std: tuple) -> np.ndarray:
    """Stacked (N, 3, H, W) uint8 -> float32 (x / 255 - mean) / std, as ClipEncoder.encode_prepared does."""
    x = np.stack(items).astype(np.float32) / np.float32(255)
    m = np.asarray(mean, dtype=np.float32)[None, :, None, None]
    s = np.asarray(std, dtype=np.float32)[None, :, None, None]
    return (x - m) / s
