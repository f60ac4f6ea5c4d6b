"""CLIP's and CLAP's text query towers on ONNX Runtime (encoders/onnx_towers.py) give torch's vectors: the inputs made
without torch equal open_clip's (tokens) and torchvision's (pixels) exactly, each exported tower is
within cosine 0.9999 of the torch forward on the same inputs, an export that is not is set aside, and a
cold `avsearch query` answers with the same hits and scores (within 1e-4) through both paths while
importing no torch (the import budget of the ONNX routes, of `info` and of `query --id`).

The real CLIP ViT-B/32 with random weights is exported once per session (about a minute per tower on
2 cores), into the session's throw-away cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from avsearch.encoders import onnx_towers
from avsearch.encoders.clap_inputs import ClapTokenizer
from avsearch.encoders.clip_inputs import ClipTokenizer, normalize_pixels, prepare_image
from avsearch.errors import ConfigError
from avsearch.modalities import IMAGE, TEXT

CLIP = "clip-vit-b-32-openai"
CLAP = "clap-630k-fusion"
TEXTS = [
    "a dog barking in the rain",
    "  Two   SPACES\tand a tab  ",
    "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, na\u00efve r\u00e9sum\u00e9",
    "&amp;lt;b&amp;gt; html &quot;entities&quot; don't we'll",
    "numbers 123 4.56 and emoji \U0001f436\U0001f327",
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3068\u4e2d\u6587",
    "mojibake: \u00c3\u00a9t\u00c3\u00a9",
    " ".join(["a very long caption"] * 40),  # truncated to 77 tokens, end-of-text last
    "x",
]


def _torch_clip(weights: Path, tower: str):
    from avsearch.encoders.registry import load_encoder

    return load_encoder(CLIP, (tower,), weights, "cpu")


def _torch_clap_text(weights: Path):
    from avsearch.encoders.registry import load_encoder

    return load_encoder(CLAP, (TEXT,), weights, "cpu")


@pytest.fixture(scope="session")
def clip_exports(av_weights_dir: Path) -> dict[str, Path]:
    """Both CLIP towers and CLAP's text tower exported (once per session) where a query looks for them;
    tower ("text", "image", "clap-text") -> graph file."""
    from avsearch.encoders.registry import get_spec

    graphs = {}
    for tower in (TEXT, IMAGE):
        enc = _torch_clip(av_weights_dir, tower)
        folder = onnx_towers._export_folder(get_spec(CLIP), tower, av_weights_dir)
        if not (folder / onnx_towers.GRAPH).is_file():
            assert onnx_towers.export_tower(enc, tower, folder) >= onnx_towers.MIN_COSINE
        graphs[tower] = folder / onnx_towers.GRAPH
    folder = onnx_towers.export_path(onnx_towers.clap_key(get_spec(CLAP), av_weights_dir)[0], TEXT)
    if not (folder / onnx_towers.GRAPH).is_file():
        assert onnx_towers.export_tower(_torch_clap_text(av_weights_dir), TEXT, folder) >= onnx_towers.MIN_COSINE
    graphs["clap-text"] = folder / onnx_towers.GRAPH
    return graphs


# -- inputs made without torch --------------------------------------------------------------------------


def test_tokens_equal_open_clip_tokens() -> None:
    from avsearch.encoders.upstream import submodule

    theirs = submodule("open_clip", "factory").get_tokenizer("ViT-B-32-quickgelu", context_length=77)
    ours = ClipTokenizer(77)
    np.testing.assert_array_equal(ours(TEXTS), theirs(TEXTS).numpy())


def test_clap_tokens_equal_roberta_tokenizer_tokens(clap_weights_dir: Path) -> None:
    from avsearch.encoders.clap_model import load_tokenizer

    roberta = clap_weights_dir / "roberta-base"
    theirs = load_tokenizer(roberta / "vocab.json")(
        [*TEXTS, "<mask> and </s> inside"], padding="max_length", truncation=True, max_length=77, return_tensors="np"
    )
    ids, mask = ClapTokenizer(roberta / "vocab.json", roberta / "merges.txt", 77)([*TEXTS, "<mask> and </s> inside"])
    np.testing.assert_array_equal(ids, theirs["input_ids"])
    np.testing.assert_array_equal(mask, theirs["attention_mask"])


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (224, 224), (1000, 225), (225, 1000), (64, 48), (333, 301)])
def test_pixels_equal_torchvision_pixels(tmp_path: Path, size: tuple[int, int]) -> None:
    from avsearch.encoders.clip import ClipImagePreparer
    from avsearch.encoders.registry import get_spec

    opts = get_spec(CLIP).options
    rng = np.random.default_rng(sum(size))
    path = tmp_path / "p.png"
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    theirs = ClipImagePreparer(224, tuple(opts["mean"]), tuple(opts["std"]), opts["interpolation"])(path)
    ours = onnx_towers.ClipNumpyPreparer(224, opts["interpolation"])(path)
    np.testing.assert_array_equal(ours, theirs.numpy())
    # ToTensor + Normalize, as ClipEncoder.encode_prepared applies them
    import torch
    from torchvision.transforms import Normalize

    want = Normalize(opts["mean"], opts["std"])(torch.stack([theirs]).float().div(255)).numpy()
    np.testing.assert_array_equal(normalize_pixels([ours], opts["mean"], opts["std"]), want)


def test_pixels_of_the_crop_match_torchvision_on_a_pil_image() -> None:
    from avsearch.encoders.clip import _clip_transform

    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (257, 411, 3), dtype=np.uint8))
    steps = _clip_transform(224, (0, 0, 0), (1, 1, 1), "bicubic").transforms[:-2]
    for step in steps:
        image_ref = step(image) if "image_ref" not in locals() else step(image_ref)  # noqa: F821
    np.testing.assert_array_equal(prepare_image(image, 224, "bicubic").transpose(1, 2, 0), np.asarray(image_ref))


# -- the exported towers -----------------------------------------------------------------------------------


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_text_tower_is_faithful(clip_exports: dict[str, Path], clip_weights_dir: Path) -> None:
    """The graph against upstream's 77-token forward: fed the whole context, and fed tokens cut after the
    batch's last end-of-text token (its length axis is dynamic: traced on other lengths than these)."""
    from avsearch.encoders.onnx_clip import cut_tokens
    from avsearch.encoders.onnx_session import normalized, run, session

    enc = _torch_clip(clip_weights_dir, TEXT)
    tokens = ClipTokenizer(77)(TEXTS)
    want = onnx_towers.torch_forward(enc, TEXT, tokens)
    graph = session(clip_exports[TEXT])
    for rows in (slice(None), slice(0, 2), slice(-1, None)):  # all (77 wide), two short texts, "x" alone
        for fed in (tokens[rows], cut_tokens(tokens[rows])):
            got = normalized(run(graph, (fed,)))
            assert _cosines(got, want[rows]).min() >= onnx_towers.MIN_COSINE, (rows, fed.shape)
    assert cut_tokens(tokens[-1:]).shape == (1, 3)  # start, x, end: three positions run


def test_clap_text_tower_is_faithful(clip_exports: dict[str, Path], av_weights_dir: Path) -> None:
    enc = _torch_clap_text(av_weights_dir)
    roberta = av_weights_dir / "roberta-base"
    inputs = ClapTokenizer(roberta / "vocab.json", roberta / "merges.txt", 77)(TEXTS)
    got = onnx_towers.onnx_forward(clip_exports["clap-text"], inputs)
    assert _cosines(got, onnx_towers.torch_forward(enc, TEXT, inputs)).min() >= onnx_towers.MIN_COSINE


def test_image_tower_is_faithful(clip_exports: dict[str, Path], clip_weights_dir: Path) -> None:
    from avsearch.encoders.registry import get_spec

    opts = get_spec(CLIP).options
    enc = _torch_clip(clip_weights_dir, IMAGE)
    rng = np.random.default_rng(7)
    items = [rng.integers(0, 256, (3, 224, 224), dtype=np.uint8) for _ in range(3)]
    items.append(np.full((3, 224, 224), 128, np.uint8))
    pixels = normalize_pixels(items, opts["mean"], opts["std"])
    got = onnx_towers.onnx_forward(clip_exports[IMAGE], pixels)
    assert _cosines(got, onnx_towers.torch_forward(enc, IMAGE, pixels)).min() >= onnx_towers.MIN_COSINE


class _Widths:
    """An ONNX Runtime session that records the token width of each run."""

    def __init__(self, graph) -> None:  # noqa: ANN001
        self.graph, self.widths = graph, []

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.graph, name)

    def run(self, names, feed):  # noqa: ANN001, ANN201
        self.widths.extend(a.shape[1] for a in feed.values())
        return self.graph.run(names, feed)


def test_onnx_encoders_give_the_torch_encoders_vectors(
    clip_exports: dict[str, Path], clip_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same vectors (input order) as the torch encoders; CLIP's text batches (shortest texts first, two a
    run here) run only up to their furthest end-of-text token."""
    from avsearch.encoders.registry import get_spec
    from tests.search.media_factory import write_image

    monkeypatch.setenv(onnx_towers.ENV, "1")
    spec = get_spec(CLIP)
    images = [write_image(tmp_path / f"i{i}.png", seed=i, size=40 + 30 * i) for i in range(3)]
    for tower in (TEXT, IMAGE):
        fast = onnx_towers.load_onnx_encoder(spec, (tower,), clip_weights_dir, "cpu")
        ref = _torch_clip(clip_weights_dir, tower)
        assert fast is not None and fast.fingerprint() == ref.fingerprint()
        if tower == TEXT:
            fast._run, fast.text_batch = _Widths(fast._run), 2
            got, want = fast.encode_text(TEXTS), ref.encode_text(TEXTS)
            ends = sorted(int(e) for e in ClipTokenizer(77)(TEXTS).argmax(axis=1))
            assert fast._run.widths == [max(ends[i : i + 2]) + 1 for i in range(0, len(ends), 2)]
            assert fast._run.widths[0] < 77 and fast._run.widths[-1] == 77  # the long caption: truncated
        else:
            got, want = fast.encode_files(IMAGE, images), ref.encode_files(IMAGE, images)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert _cosines(got, want).min() >= onnx_towers.MIN_COSINE
    fast = onnx_towers.load_onnx_encoder(get_spec(CLAP), (TEXT,), clip_weights_dir, "cpu")
    ref = _torch_clap_text(clip_weights_dir)
    assert fast is not None and fast.fingerprint() == ref.fingerprint()
    np.testing.assert_allclose(fast.encode_text(TEXTS), ref.encode_text(TEXTS), atol=1e-4)


def test_no_onnx_encoder_without_an_export_or_when_turned_off(
    clip_exports: dict[str, Path], clip_weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avsearch.encoders.registry import get_spec

    spec = get_spec(CLIP)
    monkeypatch.setenv(onnx_towers.ENV, "0")
    assert onnx_towers.load_onnx_encoder(spec, (TEXT,), clip_weights_dir, "cpu") is None
    monkeypatch.setenv(onnx_towers.ENV, "1")
    assert onnx_towers.load_onnx_encoder(spec, (TEXT,), clip_weights_dir, "cuda") is None  # GPUs run torch
    assert onnx_towers.load_onnx_encoder(spec, (TEXT, IMAGE), clip_weights_dir, "cpu") is None  # one tower each
    assert onnx_towers.load_onnx_encoder(spec, (TEXT,), clip_weights_dir, "cpu") is not None


class _TinyClip:
    """A small stand-in for a loaded ClipEncoder (text tower only) whose export takes a second."""

    def __init__(self) -> None:
        import torch

        from avsearch.encoders.registry import get_spec

        torch.manual_seed(0)
        emb, proj = torch.nn.Embedding(49408, 16), torch.nn.Linear(16, 8)

        class Model(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.emb, self.proj = emb, proj

            def encode_text(self, x: torch.Tensor) -> torch.Tensor:
                return self.proj(self.emb(x).mean(dim=1))

        self._model = Model().eval()
        self._spec = get_spec(CLIP)
        self.name, self.device, self.dtype = CLIP, torch.device("cpu"), torch.float32

    def fingerprint(self) -> str:
        return f"{CLIP}:tiny"


def test_an_unfaithful_export_is_set_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = _TinyClip()
    assert onnx_towers.export_tower(tiny, TEXT, tmp_path / "good") >= onnx_towers.MIN_COSINE
    assert (tmp_path / "good" / onnx_towers.GRAPH).is_file()
    real = onnx_towers.onnx_forward

    def broken(graph: Path, inputs: np.ndarray) -> np.ndarray:  # as if the graph lost a bit of precision
        out = real(graph, inputs)
        return out + 0.02 * np.random.default_rng(0).standard_normal(out.shape).astype(np.float32)

    monkeypatch.setattr(onnx_towers, "onnx_forward", broken)
    with pytest.raises(ConfigError, match="not faithful"):
        onnx_towers.export_tower(tiny, TEXT, tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and (tmp_path / "bad.unfaithful" / onnx_towers.GRAPH).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- a cold query through both paths ----------------------------------------------------------------------

FORBIDDEN_ONNX = ("torch", "open_clip", "laion_clap", "clap_module", "torchvision", "timm", "wandb", "librosa")
FORBIDDEN_NO_MODEL = (*FORBIDDEN_ONNX, "onnxruntime")
REST_CLIENT = "lance_namespace_urllib3_client.api"  # lancedb's REST client: local tables never use it
_IMPORT = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)")


@pytest.fixture(scope="module")
def av_index(tmp_path_factory: pytest.TempPathFactory, av_weights_dir: Path) -> dict[str, Path]:
    from avsearch.cli.app import app
    from tests.search.conftest import make_bridge
    from tests.search.media_factory import write_audio, write_image

    root = tmp_path_factory.mktemp("onnx-index")
    media = root / "media"
    images = [write_image(media / f"pic{i}.png", seed=i, size=48) for i in range(4)]
    sounds = [write_audio(media / f"clip{i}.wav", seed=i) for i in range(3)]
    bridge = make_bridge(root / "av.safetensors")
    index = root / "index"
    args = ["index", media, "--index-dir", index, "--bridge", bridge, "--weights-dir", av_weights_dir, "--quiet"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return {"index": index, "weights": av_weights_dir, "image": images[1], "audio": sounds[0]}


def _cold(args: list[str], onnx: bool, importtime: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("AVSEARCH_TIMINGS", "PYTHONWARNINGS")}
    env |= {onnx_towers.ENV: "1" if onnx else "0", "HF_HUB_OFFLINE": "1", "AVSEARCH_OFFLINE": "1"}
    probe = "import sys\nfrom avsearch.cli import main\nsys.argv = ['avsearch', *sys.argv[1:]]\nmain()\n"
    python = [sys.executable, "-X", "importtime"] if importtime else [sys.executable]
    done = subprocess.run([*python, "-c", probe, *args], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _hits(stdout: str) -> list[tuple[str, str, list[tuple[str, float]]]]:
    return [(r["target"], r["space"], [(h["path"], h["score"]) for h in r["hits"]]) for r in json.loads(stdout)]


QUERIES = {
    "image-all": lambda ix: ["--image", str(ix["image"])],
    "text-all": lambda ix: ["--text", "a dog barking in the rain"],
}


@pytest.mark.parametrize("kind", sorted(QUERIES))
def test_cold_query_same_results_through_onnx_and_no_torch(
    kind: str, av_index: dict[str, Path], clip_exports: dict[str, Path]
) -> None:
    args = ["query", *QUERIES[kind](av_index), "--index-dir", str(av_index["index"])]
    args += ["--weights-dir", str(av_index["weights"]), "--json", "--device", "cpu"]
    want = _hits(_cold(args, onnx=False).stdout)
    done = _cold(args, onnx=True, importtime=True)
    got = _hits(done.stdout)
    assert [(t, s, [p for p, _ in h]) for t, s, h in got] == [(t, s, [p for p, _ in h]) for t, s, h in want]
    for (_, _, g), (_, _, w) in zip(got, want, strict=True):
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], atol=1e-4)
    # the import budget of a route on ONNX Runtime: no torch, no upstream model code
    modules = {m.group(1) for line in done.stderr.splitlines() if (m := _IMPORT.match(line))}
    assert "onnxruntime" in modules
    assert not {m for m in modules if m.split(".")[0] in FORBIDDEN_ONNX}
    assert not [m for m in modules if m.startswith(REST_CLIENT)]


@pytest.mark.parametrize("what", ["info", "id"])
def test_commands_without_a_model_import_no_model_runtime(what: str, av_index: dict[str, Path]) -> None:
    args = ["info", "--index-dir", str(av_index["index"])]
    if what == "id":
        args = ["query", "--id", str(av_index["image"]), "--index-dir", str(av_index["index"]), "--json"]
    done = _cold(args, onnx=True, importtime=True)
    modules = {m.group(1) for line in done.stderr.splitlines() if (m := _IMPORT.match(line))}
    assert not {m for m in modules if m.split(".")[0] in FORBIDDEN_NO_MODEL}
    assert not [m for m in modules if m.startswith(REST_CLIENT)]
