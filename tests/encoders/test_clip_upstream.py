"""avsearch's CLIP encoder against upstream open_clip, file to embedding, on the same random weights.

Two weight files hold the same random ViT-B/32 (QuickGELU, OpenAI's architecture) in float16:
- a plain state dict (tests/weights_factory.py), compared with open_clip's own
  `create_model_and_transforms('ViT-B-32-quickgelu', pretrained=<file>)`, its validation transform and
  its tokenizer;
- a TorchScript archive in OpenAI's layout (written here: the state-dict keys of OpenAI's ViT-B-32.pt,
  including its `input_resolution`, `context_length` and `vocab_size` entries), compared with
  open_clip's `load_openai_model` and OpenAI's published preprocessing (bicubic resize of the shorter
  side to 224, centre crop 224, RGB, OpenAI mean/std), written here with torchvision.

Same image files and texts on both sides; avsearch goes from files (and strings) to vectors through
its own loader. Checked: cosine >= 0.9999 per row (the spec) and elements within 1e-5 (the measured
difference is 0), because random-weight CLIP embeddings of different inputs are close to each other
and a cosine threshold alone would let a wrong interpolation through.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avsearch.encoders.registry import load_encoder

ENCODER = "clip-vit-b-32-openai"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
TEXTS = ["a dog barking at the mailman", "A PHOTO OF A CAT.", "rain on a tin roof  at night", "word " * 120]


# --- inputs --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Textured, non-square images (so resize and crop matter) in three formats and modes."""
    folder = tmp_path_factory.mktemp("clip_images")
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h, fmt, mode) in enumerate(
        [(320, 240, "PNG", "RGB"), (180, 290, "JPEG", "RGB"), (250, 250, "PNG", "L")]
    ):
        yy, xx = np.mgrid[0:h, 0:w]
        stripes = 127 + 120 * np.sin(xx / (3 + i) + yy / (5 + 2 * i))[..., None]
        pixels = np.clip(stripes + rng.normal(0, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
        img = Image.fromarray(pixels, "RGB").convert(mode)
        path = folder / f"im{i}.{fmt.lower()}"
        img.save(path, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        paths.append(path)
    return paths


# --- OpenAI's TorchScript layout -----------------------------------------------------------------
def write_openai_torchscript(state: dict[str, torch.Tensor], path: Path) -> Path:
    """A TorchScript archive whose state_dict() is `state` plus OpenAI's three int entries.

    open_clip's `load_openai_model` only reads the archive's state dict (it rebuilds a non-JIT model
    from it), so a scripted module holding the tensors under OpenAI's names is what it sees in
    OpenAI's ViT-B-32.pt.
    """

    class Holder(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Holder()
    extras = {"input_resolution": 224, "context_length": 77, "vocab_size": 49408}
    for key, value in {**state, **{k: torch.tensor(v) for k, v in extras.items()}}.items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, Holder())
            module = getattr(module, name)
        if value.is_floating_point() and key not in ("attn_mask",):
            module.register_parameter(leaf, torch.nn.Parameter(value.clone(), requires_grad=False))
        else:
            module.register_buffer(leaf, value.clone())
    scripted = torch.jit.script(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(path))
    return path


@pytest.fixture(scope="module")
def torchscript_dir(clip_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = torch.load(clip_weights_dir / "ViT-B-32.pt", map_location="cpu", weights_only=True)
    folder = tmp_path_factory.mktemp("clip_openai_jit")
    write_openai_torchscript(state, folder / "ViT-B-32.pt")
    return folder


# --- helpers -------------------------------------------------------------------------------------
def _normalise(x: torch.Tensor) -> np.ndarray:
    x = x.float()
    return (x / x.norm(dim=-1, keepdim=True)).numpy()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _agree(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == np.float32
    assert _cosines(got, want).min() >= 0.9999
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def _openai_preprocess():
    """OpenAI CLIP's published evaluation transform (clip.load's `preprocess`), for 224 pixels."""
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            lambda im: im.convert("RGB"),
            T.ToTensor(),
            T.Normalize(OPENAI_MEAN, OPENAI_STD),
        ]
    )


# --- the tests -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def state_dict_vectors(clip_weights_dir: Path, image_files: list[Path]) -> dict[str, np.ndarray]:
    """Image and text vectors of open_clip's own pipeline on the state-dict file."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32-quickgelu", pretrained=str(clip_weights_dir / "ViT-B-32.pt"), precision="fp32", device="cpu"
    )
    tokenizer = open_clip.get_tokenizer("ViT-B-32-quickgelu")
    with torch.inference_mode():
        pixels = torch.stack([preprocess(Image.open(p)) for p in image_files])
        return {
            "image": _normalise(model.eval().encode_image(pixels)),
            "text": _normalise(model.encode_text(tokenizer(TEXTS))),
        }


def test_state_dict_file_matches_open_clip(
    clip_weights_dir: Path, image_files: list[Path], state_dict_vectors: dict[str, np.ndarray]
) -> None:
    ours = load_encoder(ENCODER, ["image", "text"], weights_dir=clip_weights_dir, device="cpu")
    _agree(ours.encode_files("image", image_files), state_dict_vectors["image"])
    _agree(ours.encode_text(TEXTS), state_dict_vectors["text"])


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning")
def test_openai_torchscript_file_matches_load_openai_model(
    torchscript_dir: Path, image_files: list[Path], state_dict_vectors: dict[str, np.ndarray]
) -> None:
    import open_clip

    model = open_clip.load_openai_model(str(torchscript_dir / "ViT-B-32.pt"), precision="fp32", device="cpu")
    preprocess = _openai_preprocess()
    with torch.inference_mode():
        pixels = torch.stack([preprocess(Image.open(p)) for p in image_files])
        want_images = _normalise(model.encode_image(pixels))
        want_texts = _normalise(model.encode_text(open_clip.tokenize(TEXTS, context_length=77)))
    del model
    ours = load_encoder(ENCODER, ["image", "text"], weights_dir=torchscript_dir, device="cpu")
    assert ours._model.__class__.__name__ == "CLIP"  # rebuilt from the archive, not run as TorchScript
    _agree(ours.encode_files("image", image_files), want_images)
    _agree(ours.encode_text(TEXTS), want_texts)
    # Both files hold the same weights: OpenAI's path and open_clip's state-dict path agree too.
    _agree(want_images, state_dict_vectors["image"])
    _agree(want_texts, state_dict_vectors["text"])
