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

Each file is made once per process: a later folder asking for the same file (same seed) gets a copy of
the first one, the same bytes, while that one is unchanged (size and mtime as written); making the
random models again costs seconds of CPU per file (CAV-MAE, ULIP-2, CLIP and CLAP are made for several
modules of the suite).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
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


_made: dict[tuple[str, int], tuple[Path, dict[str, tuple[int, int]]]] = {}  # (what, seed) -> first made


def _files(path: Path) -> dict[str, tuple[int, int]]:
    """A file, or every file of a folder: relative name -> (size, mtime_ns)."""
    found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): (p.stat().st_size, p.stat().st_mtime_ns) for p in found}


def _made_once(target: Path, seed: int, make: Callable[[], None]) -> None:
    """Put the file (or folder) `target` in place: a copy of the one this process made for the same name
    and seed when that one is still as written, else made by `make` (which writes `target`)."""
    key = (target.name, seed)
    first = _made.get(key)
    if first is not None and first[0].exists() and _files(first[0]) == first[1]:
        if first[0].is_dir():  # its files written over (as make() writes them), others left as they are
            shutil.copytree(first[0], target, dirs_exist_ok=True)
        else:
            tmp = target.with_name(target.name + ".copy")
            shutil.copyfile(first[0], tmp)
            tmp.rename(target)
        return
    make()
    _made[key] = (target, _files(target))


def make_clip_weights(folder: Path | str, seed: int = 0) -> Path:
    """Write ViT-B-32.pt (random open_clip ViT-B-32-quickgelu state dict, float16) into `folder`."""
    import open_clip

    folder = Path(folder)
    target = folder / CLIP_FILE
    if target.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)

    def make() -> None:
        torch.manual_seed(seed)
        model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
        state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        tmp = target.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.rename(target)

    _made_once(target, seed, make)
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
    _made_once(folder / ROBERTA_DIR, seed, lambda: _write_tiny_roberta(folder))
    config_path = folder / ROBERTA_DIR / "config.json"

    def make() -> None:
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

    _made_once(target, seed, make)
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
        folder.mkdir(parents=True, exist_ok=True)
        _made_once(folder / ULIP_CHECKPOINT, seed, lambda: save_ulip_checkpoint(random_ulip_state(seed), folder))
    return folder


def make_full_weights(folder: Path | str) -> Path:
    """Every file `avsearch index`, `query` and `classify3d` need with their defaults."""
    make_av_weights(folder)
    make_released_bridges(folder)
    return make_ulip_weights(folder)


# -- CAV-MAE ------------------------------------------------------------------------------------------
CAVMAE_FILE = "audio_model.21.pth"


def _cavmae_block_shapes(prefix: str, dim: int) -> dict[str, tuple[int, ...]]:
    """Entries of one block of the release's Block class (src/models/cav_mae.py): three LayerNorm pairs,
    timm Attention (qkv with bias, proj) and timm Mlp (fc1, fc2, ratio 4)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for norm in ("norm1", "norm1_a", "norm1_v", "norm2", "norm2_a", "norm2_v"):
        shapes |= {f"{prefix}{norm}.weight": (dim,), f"{prefix}{norm}.bias": (dim,)}
    shapes |= {
        f"{prefix}attn.qkv.weight": (3 * dim, dim),
        f"{prefix}attn.qkv.bias": (3 * dim,),
        f"{prefix}attn.proj.weight": (dim, dim),
        f"{prefix}attn.proj.bias": (dim,),
        f"{prefix}mlp.fc1.weight": (4 * dim, dim),
        f"{prefix}mlp.fc1.bias": (4 * dim,),
        f"{prefix}mlp.fc2.weight": (dim, 4 * dim),
        f"{prefix}mlp.fc2.bias": (dim,),
    }
    return shapes


def cavmae_layout() -> dict[str, tuple[int, ...]]:
    """Entry names (without 'module.') and shapes of a CAV-MAE pretrain checkpoint, written from the
    release's CAVMAE class (audio_length 1024, modality_specific_depth 11, decoder 512-d, 8 blocks)."""
    d, dd, a_tokens, v_tokens = 768, 512, 512, 196
    shapes: dict[str, tuple[int, ...]] = {
        "modality_a": (1, 1, d),
        "modality_v": (1, 1, d),
        "pos_embed_a": (1, a_tokens, d),
        "pos_embed_v": (1, v_tokens, d),
        "patch_embed_a.proj.weight": (d, 1, 16, 16),
        "patch_embed_a.proj.bias": (d,),
        "patch_embed_v.proj.weight": (d, 3, 16, 16),
        "patch_embed_v.proj.bias": (d,),
    }
    for stream, depth in (("a", 11), ("v", 11), ("u", 1)):
        for i in range(depth):
            shapes |= _cavmae_block_shapes(f"blocks_{stream}.{i}.", d)
    for norm in ("norm_a", "norm_v", "norm"):
        shapes |= {f"{norm}.weight": (d,), f"{norm}.bias": (d,)}
    # The MAE decoder (dropped by avsearch's loader, present in every pretrain file).
    shapes |= {
        "decoder_embed.weight": (dd, d),
        "decoder_embed.bias": (dd,),
        "mask_token": (1, 1, dd),
        "decoder_modality_a": (1, 1, dd),
        "decoder_modality_v": (1, 1, dd),
        "decoder_pos_embed_a": (1, a_tokens, dd),
        "decoder_pos_embed_v": (1, v_tokens, dd),
        "decoder_norm.weight": (dd,),
        "decoder_norm.bias": (dd,),
        "decoder_pred_a.weight": (16 * 16 * 1, dd),
        "decoder_pred_a.bias": (16 * 16 * 1,),
        "decoder_pred_v.weight": (16 * 16 * 3, dd),
        "decoder_pred_v.bias": (16 * 16 * 3,),
    }
    for i in range(8):
        shapes |= _cavmae_block_shapes(f"decoder_blocks.{i}.", dd)
    return shapes


def _sincos_table(dim: int, rows: int, cols: int) -> torch.Tensor:
    """A 2-D sin-cos positional table (1, rows * cols, dim), row-major, MAE style."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    grid_r, grid_c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    parts = []
    for pos in (grid_c.reshape(-1), grid_r.reshape(-1)):
        angles = pos[:, None].double() * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()[None]


class _NoisePool:
    """Unit-variance uniform noise, each tensor a slice of one 8M-value pool at a random offset: 191M
    values in about a second on a busy 2-core machine, and still a different tensor for every entry."""

    def __init__(self, gen: torch.Generator) -> None:
        self.gen = gen
        self.pool = torch.empty(1 << 23).uniform_(-(3**0.5), 3**0.5, generator=gen)

    def __call__(self, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
        n = int(torch.tensor(shape).prod()) if len(shape) else 1
        start = int(torch.randint(0, self.pool.numel() - n + 1, (1,), generator=self.gen))
        return self.pool[start : start + n].view(shape).clone()


def random_cavmae_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the CAV-MAE pretrain layout, 'module.' prefixed, float32 as released.

    Every LayerNorm gets its own random scale and shift, so running tokens through the wrong pair
    changes the output; the positional tables are sin-cos plus noise, so a loader that recomputed
    them instead of reading the file would differ.
    """
    noise = _NoisePool(torch.Generator().manual_seed(seed))
    state: dict[str, torch.Tensor] = {}
    grids = {"pos_embed_a": (8, 64), "pos_embed_v": (14, 14), "decoder_pos_embed_a": (8, 64)}
    grids["decoder_pos_embed_v"] = (14, 14)
    for key, shape in cavmae_layout().items():
        leaf = key.rsplit(".", 1)[-1]
        if key in grids:
            table = _sincos_table(shape[-1], *grids[key])
            value = table + 0.05 * noise(table.shape)
        elif "norm" in key.rsplit(".", 1)[0].rsplit(".", 1)[-1] and leaf == "weight":
            value = noise(shape).mul_(0.2).add_(1.0)
        elif leaf == "bias":
            value = noise(shape).mul_(0.1)
        elif len(shape) >= 2 and leaf == "weight":
            fan_in = int(torch.tensor(shape[1:]).prod())
            value = noise(shape).div_(fan_in**0.5)
        else:  # modality vectors, mask token
            value = noise(shape).mul_(0.5)
        state[f"module.{key}"] = value
    return state


def make_cavmae_weights(folder: Path | str, seed: int = 0, file_name: str = CAVMAE_FILE) -> Path:
    """Write `file_name` (default audio_model.21.pth, CAV-MAE-Scale++): the release's pretrain layout
    (DataParallel 'module.' prefixes, encoder + MAE decoder, positional tables), random float32
    values, real size (about 760 MB)."""
    folder = Path(folder)
    target = folder / file_name
    if target.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)

    def make() -> None:
        tmp = target.with_suffix(".tmp")
        torch.save(random_cavmae_state(seed), tmp)
        tmp.rename(target)

    _made_once(target, seed, make)
    return folder
