"""CLIP ViT-B/32's text and image towers on ONNX Runtime (one family of encoders/onnx_towers.py).

Query side (no torch): OnnxClipEncoder, ClipEncoder's encode_text / encode_files with tokens and pixels
made in numpy (encoders/clip_inputs.py). Export side (torch loaded): the tower modules and the fixed
inputs their check runs on.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.encoders.onnx_parts import FINGERPRINT, Export, spec_options
from avsearch.encoders.onnx_session import normalized, run, session
from avsearch.errors import ConfigError
from avsearch.modalities import IMAGE, TEXT

TOWERS = (TEXT, IMAGE)
# revisions of a tower's graph (in its export's name): 2, the text graph takes tokens only up to the last
# end-of-text token of its batch (a dynamic length axis), as the torch encoder runs them
REVISIONS = {TEXT: 2}
LENGTH = "length"  # the name of that axis


def fingerprint(spec: Any, weights_dir: Path | str | None) -> tuple[str, Path]:
    """ClipEncoder.fingerprint() and the weights file, without loading the model."""
    from avsearch.encoders.identity import fingerprint as make
    from avsearch.encoders.weights import find_file, resolve_weight

    (file_key,) = spec.files
    path = resolve_weight(find_file(file_key).name, weights_dir)
    return make(spec.name, [path], spec_options(spec)), path


def key(spec: Any, weights_dir: Path | str | None) -> str:
    return fingerprint(spec, weights_dir)[0]


def load(spec: Any, tower: str, weights_dir: Path | str | None, folder: Path) -> OnnxClipEncoder:
    fp, weight_path = fingerprint(spec, weights_dir)
    return OnnxClipEncoder(spec, (tower,), fp, weight_path, folder / "model.onnx")


class ClipNumpyPreparer:
    """ClipImagePreparer without torch: one image file -> (3, size, size) uint8 (picklable, model-free)."""

    def __init__(self, size: int, interpolation: str) -> None:
        self.size, self.interpolation = size, interpolation

    def __call__(self, path: Path) -> np.ndarray:
        from avsearch.encoders.clip_inputs import prepare_image
        from avsearch.media.image import load_image

        return prepare_image(load_image(path), self.size, self.interpolation)


class OnnxClipEncoder:
    """CLIP's text or image tower on ONNX Runtime: ClipEncoder's encode_text / encode_files, same vectors."""

    runtime = "onnx"

    def __init__(self, spec: Any, modalities: tuple[str, ...], fingerprint: str, weight_path: Path, graph: Path):
        self.name, self.space, self.dim = spec.name, spec.space, spec.dim
        self.modalities = modalities
        self._spec = spec
        self._fingerprint = fingerprint
        self._weight_path = weight_path
        self.graph = graph
        self._model = None  # no torch model (the cold-start probe reads this)
        self._run = session(graph)
        opts = spec.options
        self._preparer = ClipNumpyPreparer(opts["image_size"], opts["interpolation"])
        self._tokenizer: Any = None
        self.image_batch, self.text_batch = opts["batch_image"], opts["batch_text"]

    def fingerprint(self) -> str:
        return self._fingerprint

    def _require(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ConfigError(f"{self.name} was loaded without its {modality} tower")

    def _forward(self, inputs: np.ndarray, batch: int) -> np.ndarray:
        if not len(inputs):
            return np.zeros((0, self.dim), np.float32)
        return normalized(run(self._run, (inputs,), batch))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        from avsearch.encoders.clip_inputs import ClipTokenizer
        from avsearch.media.text import check_texts

        self._require(TEXT)
        cleaned = check_texts(texts)
        if not cleaned:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._tokenizer is None:
            self._tokenizer = ClipTokenizer(self._spec.options["context_length"])
        tokens = self._tokenizer(list(cleaned))
        if not isinstance(self._run.get_inputs()[0].shape[1], str):
            return self._forward(tokens, self.text_batch)  # a graph of the whole context (an older export)
        return normalized(run_cut(self._run, tokens, self.text_batch))

    def preparer(self, modality: str) -> ClipNumpyPreparer:
        if modality != IMAGE:
            raise ConfigError(f"{self.name} encodes image files, not {modality}")
        return self._preparer

    def prepare(self, modality: str, path: Path) -> np.ndarray:
        return self.preparer(modality)(path)

    def encode_prepared(self, modality: str, items: Sequence[Any]) -> np.ndarray:
        from avsearch.encoders.clip_inputs import normalize_pixels

        self._require(IMAGE)
        if not len(items):
            return np.zeros((0, self.dim), dtype=np.float32)
        opts = self._spec.options
        pixels = normalize_pixels([np.asarray(i, dtype=np.uint8) for i in items], opts["mean"], opts["std"])
        return self._forward(pixels, self.image_batch)

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        self._require(IMAGE)
        if len(paths) == 1:
            items = [self.prepare(modality, Path(paths[0]))]
        else:
            with ThreadPoolExecutor(max_workers=4) as pool:  # PIL decodes release the GIL
                items = list(pool.map(lambda p: self.prepare(modality, Path(p)), paths))
        return self.encode_prepared(modality, items)


def eot_positions(tokens: np.ndarray) -> np.ndarray:
    """Per row of CLIP tokens (N, context), the end-of-text token's position: the highest id in the row
    (OpenAI's tokenizer gives it the highest id, padding is 0), which the text tower pools."""
    return tokens.argmax(axis=-1)


def run_cut(graph: Any, tokens: np.ndarray, batch: int) -> np.ndarray:
    """The text graph's vectors for CLIP tokens (N, context), each batch run only up to its furthest
    end-of-text token (the tower is causal: later positions never reach the pooled one). Rows are batched
    shortest first, so that similar lengths share a batch, and returned in input order (as ClipEncoder's
    torch forward does)."""
    ends = eot_positions(tokens)
    order = np.argsort(ends, kind="stable")
    name = graph.get_inputs()[0].name
    out = np.empty((len(tokens), graph.get_outputs()[0].shape[-1]), np.float32)
    for i in range(0, len(tokens), batch):
        rows = order[i : i + batch]
        width = int(ends[rows].max()) + 1
        out[rows] = graph.run(None, {name: np.ascontiguousarray(tokens[rows, :width])})[0]
    return out


# -- export side (torch is loaded) ------------------------------------------------------------------------


SAMPLE_TEXTS = ("a dog barking in the rain", "an orchestra tuning up", "x", " ".join(["long words"] * 60))


def sample_inputs(encoder: Any, tower: str, texts: Sequence[str] = SAMPLE_TEXTS) -> np.ndarray:
    """Fixed inputs the export and its check run on: tokens of a few texts (one long enough to be
    truncated), or pixels of a few synthetic pictures (normalised as the encoder normalises them)."""
    from avsearch.encoders.clip_inputs import ClipTokenizer, normalize_pixels

    opts = encoder._spec.options
    if tower == TEXT:
        return ClipTokenizer(opts["context_length"])(list(texts))
    rng = np.random.default_rng(0)
    size = opts["image_size"]
    items = [rng.integers(0, 256, (3, size, size), dtype=np.uint8) for _ in range(3)]
    gradient = np.broadcast_to(np.linspace(0, 255, size, dtype=np.float32).astype(np.uint8), (3, size, size))
    return normalize_pixels([*items, np.ascontiguousarray(gradient)], opts["mean"], opts["std"])


def exports(encoder: Any, tower: str) -> list[Export]:
    """The tower's one graph: forward(tokens or normalised pixels) -> the un-normalised vectors. The text
    graph takes tokens cut after the batch's last end-of-text token (`cut_text_tower`), traced on short
    texts and checked also on a batch that fills the context and on a single short text; a model that
    cannot be cut so gets the whole-context graph."""
    import torch

    model = encoder._model
    if tower == TEXT and (cut := cut_text_tower(model)) is not None:
        samples = sample_inputs(encoder, TEXT, SAMPLE_TEXTS[:3])
        more = (sample_inputs(encoder, TEXT), sample_inputs(encoder, TEXT, ["x"]))
        return [Export("model.onnx", cut, ("input",), samples, cut_tokens, axes={"input": {1: LENGTH}}, more=more)]

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model.encode_text(x) if tower == TEXT else self.model.encode_image(x)

    return [Export("model.onnx", Tower().eval(), ("input",), sample_inputs(encoder, tower))]


def torch_forward(encoder: Any, tower: str, inputs: np.ndarray) -> np.ndarray:
    """The torch encoder's vectors for the same inputs the graph gets (tokens or normalised pixels)."""
    import torch

    with torch.inference_mode():
        if tower == TEXT:
            out = encoder._model.encode_text(torch.from_numpy(inputs).to(encoder.device))
        else:
            out = encoder._model.encode_image(torch.from_numpy(inputs).to(encoder.device, encoder.dtype))
    return normalized(out.float().cpu().numpy())


def extras(encoder: Any, tower: str) -> dict[str, str]:
    return {FINGERPRINT: encoder.fingerprint() + "\n"}


def cut_tokens(tokens: np.ndarray) -> np.ndarray:
    """CLIP tokens (N, context) cut after their furthest end-of-text token, as run_cut feeds the graph."""
    return np.ascontiguousarray(tokens[:, : int(eot_positions(tokens).max()) + 1])


def cut_text_tower(model: Any) -> Any:
    """open_clip CLIP's text tower as a module taking tokens of any length L (N, L) up to the batch's last
    end-of-text token: upstream's steps (token and positional embeddings, the residual attention blocks,
    ln_final, the end-of-text token's output, the projection) written with no size taken from the input,
    so that the traced graph keeps L dynamic (nn.MultiheadAttention's traced graph fixes it): the
    attention of each block is its own in-projection, the causal mask built from token positions, softmax,
    out-projection. None for a model it does not hold for (pooling other than argmax, no causal mask,
    blocks of another form, not float32): that one is exported whole-context."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from avsearch.encoders.causal_mask import is_causal

    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask", "text_projection")
    if (
        not all(getattr(model, n, None) is not None for n in needed)
        or getattr(model, "text_pool_type", None) != "argmax"
    ):
        return None
    blocks = getattr(model.transformer, "resblocks", None)
    if blocks is None or not is_causal(model.attn_mask, model.positional_embedding.shape[0]):
        return None
    if model.transformer.get_cast_dtype() != torch.float32:
        return None
    for block in blocks:  # open_clip's self-attention block, one in-projection for q, k and v
        if type(block).forward.__qualname__ != "ResidualAttentionBlock.forward" or hasattr(block, "ln_1_kv"):
            return None
        attn = getattr(block, "attn", None)
        if not isinstance(attn, torch.nn.MultiheadAttention) or attn.in_proj_weight is None:
            return None

    def attend(attn: torch.nn.MultiheadAttention, x: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).unflatten(-1, (3, attn.num_heads, -1))
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (N, heads, L, head width)
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
        weights = scores.masked_fill(later, float("-inf")).softmax(dim=-1)
        return attn.out_proj((weights @ v).transpose(1, 2).flatten(2))

    class CutText(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            m = self.model
            # positions 0..L-1 and the causal mask, from the tokens (no size read: it would be traced fixed)
            positions = (tokens * 0 + 1).cumsum(dim=1) - 1
            later = (positions.unsqueeze(-2) > positions.unsqueeze(-1)).unsqueeze(1)  # (N, 1, L, L)
            x = m.token_embedding(tokens) + F.embedding(positions, m.positional_embedding)
            for block in m.transformer.resblocks:
                x = x + block.ls_1(attend(block.attn, block.ln_1(x), later))
                x = x + block.ls_2(block.mlp(block.ln_2(x)))
            x = m.ln_final(x)
            x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
            projection = m.text_projection
            return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection

    return CutText().eval()
