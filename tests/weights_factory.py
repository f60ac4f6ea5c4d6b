"""Test-only helpers that CREATE weights folders holding the real architectures with random weights.

Nothing here is a product component: these files stand in for the published checkpoints (which cannot
be downloaded on the test machines) so that tests exercise the real loading code off-line.

API (every function returns the folder it filled; calling it again on the same folder is a no-op):
- make_clip_weights(folder) -> Path: `ViT-B-32.pt`, the state dict of a randomly initialised open_clip
  ViT-B-32 (QuickGELU, the OpenAI architecture), stored in float16 like OpenAI's file. Real size.
- make_clap_weights(folder) -> Path: `630k-fusion-best.pt` (laion_clap training-checkpoint layout:
  {'epoch', 'state_dict' with 'module.' prefixes}) of a randomly initialised laion_clap CLAP fusion
  model (HTSAT-tiny, aff_2d fusion) whose RoBERTa text tower is TINY (1 layer, hidden 768 as
  CLAP's text projection requires, 12 heads, ~400-token vocabulary), plus `roberta-base/config.json`
  describing that tiny RoBERTa and `roberta-base/vocab.json` + `merges.txt`, a byte-level BPE
  tokenizer trained on a few sentences with the `tokenizers` library. The real roberta-base (125M
  parameters) would make every test minutes slower on CPU; the model still goes through laion_clap's
  clap_module code (create_model, CLAP, HTSAT, RobertaModel), only with a smaller RoBERTa config.
- make_av_weights(folder) -> Path: both of the above in one folder.
- make_released_bridges(folder) -> Path: `clap_clip.pt` and `ulip_clip.pt` with the released C-MCR key
  layout (Head_A/Head_B, net1/net2 or net, BatchNorm buffers), random values.
- make_ulip_weights(folder) -> Path: `pointbert_ULIP-2.pt`, ULIP's trainer layout with all 462 entries
  (tests/pointcloud/conftest.py says how its random tensors are made).
- make_full_weights(folder) -> Path: everything the three user commands need (the documented layout).
"""

from __future__ import annotations

from pathlib import Path

import torch

CLIP_FILE = "ViT-B-32.pt"
CLAP_FILE = "630k-fusion-best.pt"
ROBERTA_DIR = "roberta-base"

_CORPUS = [
    "a dog barks in the distance while rain falls on a metal roof",
    "a woman speaks softly and a baby laughs",
    "birds sing in the forest at dawn",
    "a car engine starts and drives away on gravel",
    "music plays from a radio with guitar and drums",
    "the crowd cheers loudly in a stadium",
    "water flows in a small stream over rocks",
    "a cat meows and footsteps walk across a wooden floor",
]


def make_clip_weights(folder: Path | str, seed: int = 0) -> Path:
    """Write ViT-B-32.pt (random open_clip ViT-B-32-quickgelu state dict, float16) into `folder`."""
    import open_clip

    folder = Path(folder)
    target = folder / CLIP_FILE
    if target.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    tmp = target.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.rename(target)
    return folder


def _write_tiny_roberta(folder: Path) -> Path:
    """roberta-base/{vocab.json, merges.txt, config.json} of a tiny RoBERTa; returns config.json."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig

    rdir = folder / ROBERTA_DIR
    rdir.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    # RoBERTa's special-token ids: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4.
    bpe.train_from_iterator(
        _CORPUS, vocab_size=400, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    bpe.save_model(str(rdir))
    config = RobertaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=768,  # CLAP's text_projection is Linear(768, 512): the width is fixed
        num_hidden_layers=1,
        num_attention_heads=12,
        intermediate_size=512,
        max_position_embeddings=80,  # 77 tokens + RoBERTa's padding offset of 2
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    config.to_json_file(str(rdir / "config.json"))
    return rdir / "config.json"


def make_clap_weights(folder: Path | str, seed: int = 0) -> Path:
    """Write 630k-fusion-best.pt (random CLAP fusion model, tiny RoBERTa) and roberta-base/ files."""
    from avsearch.encoders.clap_model import _local_roberta, clap_module

    folder = Path(folder)
    target = folder / CLAP_FILE
    if target.is_file() and (folder / ROBERTA_DIR / "config.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    config_path = _write_tiny_roberta(folder)
    torch.manual_seed(seed)
    from avsearch.encoders.clap_model import MESHGRID_INDEXING
    from avsearch.encoders.upstream import quiet

    with _local_roberta(config_path), quiet(MESHGRID_INDEXING):  # HTSAT's torch.meshgrid call warns
        model, _cfg = clap_module().create_model(
            "HTSAT-tiny", "roberta", precision="fp32", enable_fusion=True, fusion_type="aff_2d"
        )
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    # Published checkpoints were saved with transformers < 4.31, which kept this buffer.
    state["module.text_branch.embeddings.position_ids"] = torch.arange(80).unsqueeze(0)
    tmp = target.with_suffix(".tmp")
    torch.save({"epoch": 1, "state_dict": state}, tmp)
    tmp.rename(target)
    return folder


def make_av_weights(folder: Path | str) -> Path:
    """Both the CLIP and the CLAP files in one folder."""
    make_clip_weights(folder)
    return make_clap_weights(folder)


# The released C-MCR heads per file: (sub-module, input width, output width) per layer of each side.
_RELEASED_LAYERS = {"clap_clip.pt": (("net1", 512, 1024), ("net2", 1024, 512)), "ulip_clip.pt": (("net", 512, 512),)}


def make_released_bridges(folder: Path | str, seed: int = 0) -> Path:
    """Write clap_clip.pt and ulip_clip.pt (released layout, random weights) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    for file_name, layers in _RELEASED_LAYERS.items():
        if (folder / file_name).is_file():
            continue
        state = {}
        for head, (name, n_in, n_out) in ((h, layer) for h in ("Head_A", "Head_B") for layer in layers):
            linear, norm = f"{head}.{name}.0", f"{head}.{name}.1"
            state[f"{linear}.weight"] = torch.randn(n_out, n_in, generator=gen) / n_in**0.5
            state[f"{linear}.bias"] = torch.zeros(n_out)
            state[f"{norm}.weight"], state[f"{norm}.bias"] = torch.ones(n_out), torch.zeros(n_out)
            state[f"{norm}.running_mean"] = torch.zeros(n_out)
            state[f"{norm}.running_var"] = torch.full((n_out,), 1.0 / n_in)  # unit-norm inputs
            state[f"{norm}.num_batches_tracked"] = torch.tensor(1)
        torch.save(state, folder / file_name)
    return folder


def make_ulip_weights(folder: Path | str, seed: int = 0) -> Path:
    """Write pointbert_ULIP-2.pt (ULIP trainer layout, random weights) into `folder`."""
    from avsearch.encoders.ulip_checkpoint import ULIP_CHECKPOINT
    from tests.pointcloud.conftest import random_ulip_state, save_ulip_checkpoint

    folder = Path(folder)
    if not (folder / ULIP_CHECKPOINT).is_file():
        save_ulip_checkpoint(random_ulip_state(seed), folder)
    return folder


def make_full_weights(folder: Path | str) -> Path:
    """Every file `avsearch index`, `query` and `classify3d` need with their defaults."""
    make_av_weights(folder)
    make_released_bridges(folder)
    return make_ulip_weights(folder)
