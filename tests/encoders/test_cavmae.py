"""CAV-MAE encoder: fbank against torchaudio's outputs, loading, and an independent reference forward.

The checkpoint is random values in the release's exact pretrain layout (tests/weights_factory.py,
make_cavmae_weights). The reference forward below is written from the release's published structure
(src/models/cav_mae.py: CAVMAE.forward_feat and its Block) with timm's own Attention and Mlp, so it
shares no code with avsearch/encoders/cavmae.py. The fbank reference is torchaudio's
compliance.kaldi.fbank, computed once by scripts/make_fbank_reference.py (torchaudio is not a
dependency of avsearch).
"""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from torch import nn

from avsearch.encoders.base import Encoder
from avsearch.encoders.cavmae_features import (
    CavMaeImagePreparer,
    audio_inputs,
    kaldi_fbank,
    load_first_channel,
    scale_pixels,
    window_starts,
)
from avsearch.encoders.registry import load_encoder
from avsearch.errors import ConfigError, DecodeError, IncompatibleError, InputError, WeightsMissingError
from tests.weights_factory import CAVMAE_FILE, make_cavmae_weights

NAME = "cavmae-scale-plus-plus"
DATA = Path(__file__).parent / "data" / "cavmae_fbank_reference.npz"
FBANK_TOL = 1e-3  # relative difference in mel energy, ~ the abs difference in log-mel (ours vs torchaudio, float32)
CASES = ("sine_dc", "noise", "chirp", "quiet", "one_frame", "long")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cavmae_weights(tmp_path_factory.mktemp("cavmae"))


@pytest.fixture(scope="module")
def encoder(weights: Path) -> Encoder:
    return load_encoder(NAME, weights_dir=weights, device="cpu")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cavmae-media")
    t = np.arange(int(1.5 * 44_100)) / 44_100
    left = 0.4 * np.sin(2 * np.pi * 523 * t) * np.linspace(0.2, 1.0, t.size)
    right = 0.3 * np.random.default_rng(1).standard_normal(t.size)
    sf.write(root / "stereo.wav", np.stack([left, right], axis=1).astype(np.float32), 44_100, subtype="PCM_16")
    pixels = np.random.default_rng(2).integers(0, 256, (180, 320, 3), dtype=np.uint8)
    pixels[40:140, 100:220] = (200, 40, 40)
    Image.fromarray(pixels).save(root / "wide.png")
    return {"audio": root / "stereo.wav", "image": root / "wide.png"}


@pytest.fixture(scope="module")
def embedded(encoder: Encoder, media: dict[str, Path]) -> dict[str, np.ndarray]:
    """One audio file and one image through encode_files (one model forward each, shared by tests)."""
    return {m: encoder.encode_files(m, [media[m]]) for m in ("audio", "image")}


def _reference() -> dict[str, np.ndarray]:
    with np.load(DATA) as data:
        return {k: data[k] for k in data.files}


def _assert_log_energies_close(ours: np.ndarray, expected: np.ndarray) -> None:
    """Mel energies agree within FBANK_TOL relative (the log within ~FBANK_TOL), plus 1e-10 of the frame's
    strongest bin absolute: in near-silent bins (energy ~1e-7, at the log's floor) the FFT's float32
    rounding, which differs between CPUs (AVX-512 here), moves the log by up to 5.5e-3 while the energy
    moves by 3e-12 of the frame's peak, far under float32's own 1.2e-7."""
    energy = np.exp(expected.astype(np.float64))
    allowed = FBANK_TOL * energy + 1e-10 * energy.max(axis=-1, keepdims=True)
    assert (np.abs(np.exp(ours.astype(np.float64)) - energy) <= allowed).all()


# -- preprocessing -----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_fbank_matches_torchaudio(case: str) -> None:
    ref = _reference()
    wave = torch.from_numpy(ref[f"wave_{case}"].astype(np.float32) / 32768.0)
    ours = kaldi_fbank(wave - wave.mean()).numpy()
    expected = ref[f"fbank_{case}"]
    assert ours.shape == expected.shape
    _assert_log_energies_close(ours, expected)


@pytest.mark.parametrize("case", CASES)
def test_model_input_is_upstreams(case: str) -> None:
    """audio_inputs (mean removal, fbank, pad or cut to 1024, normalisation) against upstream's
    _wav2fbank steps applied to torchaudio's fbank: ZeroPad2d at the end or [0:1024], then (x+5.081)/4.4849."""
    ref = _reference()
    fbank = torch.from_numpy(ref[f"fbank_{case}"])
    p = 1024 - fbank.shape[0]
    upstream = nn.ZeroPad2d((0, 0, 0, p))(fbank) if p > 0 else fbank[:1024]
    upstream = (upstream - -5.081) / 4.4849
    ours = audio_inputs(ref[f"wave_{case}"].astype(np.float32) / 32768.0, max_windows=1)
    assert ours.shape == (1, 1024, 128)
    _assert_log_energies_close(ours[0].numpy() * 4.4849 - 5.081, upstream.numpy() * 4.4849 - 5.081)


def test_first_channel_at_16k_pcm16(tmp_path: Path) -> None:
    rate = 16_000
    left = np.round(0.3 * np.sin(np.arange(rate) * 0.05) * 32768) / 32768
    right = np.random.default_rng(0).uniform(-0.5, 0.5, rate)
    sf.write(tmp_path / "s16k.wav", np.stack([left, right], 1).astype(np.float32), rate, subtype="PCM_16")
    np.testing.assert_array_equal(load_first_channel(tmp_path / "s16k.wav"), left.astype(np.float32))
    sf.write(tmp_path / "s48k.wav", np.stack([left, right], 1).astype(np.float32), 48_000, subtype="PCM_16")
    resampled = load_first_channel(tmp_path / "s48k.wav")
    import librosa

    expected = librosa.resample(left.astype(np.float32), orig_sr=48_000, target_sr=rate, res_type="soxr_hq")
    assert resampled.shape == expected.shape == (5334,)  # the left channel at 16 kHz, 16-bit values:
    np.testing.assert_array_equal(resampled, np.round(expected.astype(np.float64) * 32768) / 32768)
    sf.write(tmp_path / "silent.wav", np.zeros(rate, np.float32), rate)
    with pytest.raises(DecodeError, match="silent.wav: audio is silent"):
        load_first_channel(tmp_path / "silent.wav")


def test_long_clip_windows() -> None:
    assert window_starts(1000, 1024, 6) == [0]
    assert window_starts(2500, 1024, 6) == [0, 738, 1476]  # evenly spaced, the last ends at frame 2500
    assert window_starts(100_000, 1024, 6) == [0, 19795, 39590, 59386, 79181, 98976]  # capped
    rng = np.random.default_rng(3)
    wave = (0.1 * rng.standard_normal(16_000 * 25)).astype(np.float32)  # 25 s: 2498 frames
    wins = audio_inputs(wave, max_windows=6)
    whole = kaldi_fbank(torch.from_numpy(wave - wave.mean()))
    assert wins.shape == (3, 1024, 128) and whole.shape[0] == 2498
    for w, start in zip(wins, window_starts(2498, 1024, 6), strict=True):
        expected = (whole[start : start + 1024] + 5.081) / 4.4849
        assert (w - expected).abs().max().item() < 1e-4  # a window from its slice == the whole clip's frames


def test_image_crop_is_upstreams_transform(media: dict[str, Path]) -> None:
    from torchvision import transforms as T

    upstream = T.Compose(
        [
            T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(mean=[0.4850, 0.4560, 0.4060], std=[0.2290, 0.2240, 0.2250]),
        ]
    )(Image.open(media["image"]).convert("RGB"))
    preparer = pickle.loads(pickle.dumps(CavMaeImagePreparer()))  # travels to decode worker processes
    crop = preparer(media["image"])
    assert crop.dtype == torch.uint8 and crop.shape == (3, 224, 224)
    assert (scale_pixels(crop[None])[0] - upstream).abs().max().item() < 1e-5


# -- loading -----------------------------------------------------------------------------------------
def test_loads_strictly_and_lists_dropped_decoder(weights: Path, caplog: pytest.LogCaptureFixture) -> None:
    from avsearch.encoders.cavmae import read_cavmae_state

    with caplog.at_level(logging.INFO, logger="avsearch.encoders.cavmae"):
        state = read_cavmae_state(weights / CAVMAE_FILE)
    line = next(r.getMessage() for r in caplog.records if "decoder" in r.getMessage())
    assert "dropped 173 MAE decoder entries" in line
    for name in ("decoder_blocks (160)", "decoder_embed (2)", "mask_token (1)", "decoder_pos_embed_a (1)"):
        assert name in line
    raw = torch.load(weights / CAVMAE_FILE, weights_only=True, mmap=True)
    assert len(state) == len(raw) - 173 and not any(k.startswith(("module.", "decoder_")) for k in state)
    model = load_encoder(NAME, ["audio"], weights_dir=weights, device="cpu")._model
    # Positional tables come from the file (sin-cos plus noise there: a recomputed table would differ).
    assert torch.equal(model.pos_embed_a, raw["module.pos_embed_a"])
    assert model.blocks_v is None and model.patch_embed_v is None  # the unasked tower is freed


def _save(path: Path, state: dict) -> Path:
    torch.save(state, path)
    return path


def test_other_layouts_refused_in_one_line(tmp_path: Path, weights: Path) -> None:
    from avsearch.encoders.cavmae import load_cavmae_model

    def load(path: Path) -> None:
        load_cavmae_model(path, ("audio",), torch.device("cpu"))

    head = {"module.mlp_head.0.weight": torch.ones(768), "module.mlp_head.1.weight": torch.ones(527, 768)}
    with pytest.raises(IncompatibleError, match=r"fine-tuned CAV-MAE classifier .*audio_model\.21\.pth") as exc:
        load(_save(tmp_path / "as-full-51.2.pth", {"module.pos_embed_a": torch.zeros(1, 512, 768), **head}))
    assert "\n" not in str(exc.value)
    raw = torch.load(weights / CAVMAE_FILE, weights_only=True, mmap=True)
    partial = {k: v for k, v in raw.items() if "blocks_u" not in k}
    with pytest.raises(IncompatibleError, match=r"20 encoder entries missing \(blocks_u\.0\.attn"):
        load(_save(tmp_path / "partial.pth", partial))
    shorter = {**raw, "module.pos_embed_a": torch.zeros(1, 256, 768)}
    with pytest.raises(IncompatibleError, match=r"pos_embed_a: \(1, 256, 768\), expected \(1, 512, 768\)"):
        load(_save(tmp_path / "short.pth", shorter))
    whole = _save(tmp_path / "whole.pth", {"module.modality_a": torch.zeros(1, 1, 768)}).read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[: len(whole) // 2])  # a download that stopped half way
    with pytest.raises(InputError, match="cut.pth: not a readable CAV-MAE checkpoint"):
        load(tmp_path / "cut.pth")
    with pytest.raises(IncompatibleError, match="refused"):
        load(_save(tmp_path / "code.pth", {"x": Path("/")}))


def test_missing_file_names_it_and_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVSEARCH_OFFLINE", "1")
    with pytest.raises(WeightsMissingError, match=r"audio_model\.21\.pth not found.*dropbox.com/s/l5t5geufdy3qvnv"):
        load_encoder(NAME, weights_dir=tmp_path, device="cpu")


# -- the encoder -------------------------------------------------------------------------------------
class _RefBlock(nn.Module):
    """The release's Block: timm Attention and Mlp, LayerNorm pairs picked by modality (None, 'a', 'v')."""

    def __init__(self) -> None:
        from timm.layers import Mlp
        from timm.models.vision_transformer import Attention

        super().__init__()
        for n in ("norm1", "norm1_a", "norm1_v", "norm2", "norm2_a", "norm2_v"):
            setattr(self, n, nn.LayerNorm(768))
        self.attn = Attention(768, num_heads=12, qkv_bias=True)
        self.attn.fused_attn = False  # the explicit softmax(q k^T * scale) v path
        self.mlp = Mlp(in_features=768, hidden_features=3072, act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, modality: str | None = None) -> torch.Tensor:
        suffix = {None: "", "a": "_a", "v": "_v"}[modality]
        x = x + self.attn(getattr(self, "norm1" + suffix)(x))
        return x + self.mlp(getattr(self, "norm2" + suffix)(x))


class _RefCavMae(nn.Module):
    """CAVMAE's encoder entries and forward_feat, step by step as the release writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed_a = nn.Module()
        self.patch_embed_a.proj = nn.Conv2d(1, 768, 16, 16)
        self.patch_embed_v = nn.Module()
        self.patch_embed_v.proj = nn.Conv2d(3, 768, 16, 16)
        self.modality_a, self.modality_v = nn.Parameter(torch.zeros(1, 1, 768)), nn.Parameter(torch.zeros(1, 1, 768))
        self.pos_embed_a, self.pos_embed_v = (
            nn.Parameter(torch.zeros(1, 512, 768)),
            nn.Parameter(torch.zeros(1, 196, 768)),
        )
        self.blocks_a = nn.ModuleList(_RefBlock() for _ in range(11))
        self.blocks_v = nn.ModuleList(_RefBlock() for _ in range(11))
        self.blocks_u = nn.ModuleList([_RefBlock()])
        self.norm_a, self.norm_v, self.norm = nn.LayerNorm(768), nn.LayerNorm(768), nn.LayerNorm(768)

    def forward_feat(self, a: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = a.unsqueeze(1).transpose(2, 3)
        a = self.patch_embed_a.proj(a).flatten(2).transpose(1, 2) + self.pos_embed_a + self.modality_a
        v = self.patch_embed_v.proj(v).flatten(2).transpose(1, 2) + self.pos_embed_v + self.modality_v
        for blk in self.blocks_a:
            a = blk(a)
        for blk in self.blocks_v:
            v = blk(v)
        for blk in self.blocks_u:
            a = blk(a, "a")
        a = self.norm_a(a)
        for blk in self.blocks_u:
            v = blk(v, "v")
        return a, self.norm_v(v)


@torch.inference_mode()
def test_matches_reference_forward(
    weights: Path, encoder: Encoder, media: dict[str, Path], embedded: dict[str, np.ndarray]
) -> None:
    raw = torch.load(weights / CAVMAE_FILE, weights_only=True, mmap=True)
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    state = {k: v for k, v in state.items() if not k.startswith(("decoder_", "mask_token"))}
    with torch.device("meta"):  # skip random initialisation: every entry comes from the file
        ref = _RefCavMae()
    ref.load_state_dict(state, strict=True, assign=True)
    ref.eval()
    fbank = encoder.prepare("audio", media["audio"])
    pixels = scale_pixels(encoder.prepare("image", media["image"])[None])
    a, v = ref.forward_feat(fbank, pixels)
    # retrieval.py: mean over all patches, then L2 normalisation
    expected = {
        "audio": nn.functional.normalize(a.mean(1), dim=-1),
        "image": nn.functional.normalize(v.mean(1), dim=-1),
    }
    for modality in ("audio", "image"):
        ours = torch.from_numpy(embedded[modality])
        cosine = nn.functional.cosine_similarity(ours, expected[modality]).item()
        assert cosine >= 0.9999, (modality, cosine)
        assert (ours - expected[modality]).abs().max().item() < 1e-4


def test_encoder_protocol(encoder: Encoder, embedded: dict[str, np.ndarray], media: dict[str, Path]) -> None:
    assert isinstance(encoder, Encoder)
    assert (encoder.name, encoder.space, encoder.dim, encoder.modalities) == (NAME, "cavmae", 768, ("audio", "image"))
    for modality in ("audio", "image"):
        vec = embedded[modality]
        assert vec.shape == (1, 768) and vec.dtype == np.float32
        assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5
    audio = pickle.loads(pickle.dumps(encoder.preparer("audio")))(media["audio"])
    assert audio.shape == (1, 1024, 128) and torch.equal(audio, encoder.prepare("audio", media["audio"]))
    with pytest.raises(IncompatibleError, match="no text tower .*text queries use C-MCR"):
        encoder.encode_text(["a dog barking"])
    with pytest.raises(ConfigError, match="not pointcloud"):
        encoder.preparer("pointcloud")
    assert encoder.encode_prepared("audio", []).shape == (0, 768)


def test_fingerprint_names_the_weights_content_and_the_preprocessing(encoder: Encoder, tmp_path: Path) -> None:
    """Same weights and settings: the same fingerprint, whatever the instance, path or batch sizes; other
    weight bytes or another window count (other vectors): another one."""
    from dataclasses import replace

    from avsearch.encoders.cavmae import CavMaeEncoder

    spec = encoder._spec  # type: ignore[attr-defined]

    def fingerprint(options: dict | None = None, path: Path | None = None) -> str:
        changed = replace(spec, options={**spec.options, **(options or {})})
        path = path or encoder._weight_path  # type: ignore[attr-defined]
        return CavMaeEncoder(changed, encoder._model, encoder.modalities, encoder.device, path).fingerprint()  # type: ignore[attr-defined]

    mine = encoder.fingerprint()
    assert re.fullmatch(rf"{NAME}:[0-9a-f]{{16}}", mine)
    assert fingerprint() == mine  # another encoder over the same file and settings
    assert fingerprint({"batch_audio": 1, "batch_image": 1}) == mine  # batch sizes change no vector
    assert fingerprint({"max_windows": int(spec.options.get("max_windows", 6)) + 1}) != mine
    a, b, twin = tmp_path / "a.pth", tmp_path / "b.pth", tmp_path / "elsewhere" / "a.pth"
    twin.parent.mkdir()
    a.write_bytes(bytes(4096))
    b.write_bytes(bytes(4095) + b"\x01")  # the same size, one byte apart
    twin.write_bytes(bytes(4096))
    assert fingerprint(path=a) != fingerprint(path=b) and fingerprint(path=a) == fingerprint(path=twin)
    assert mine not in (fingerprint(path=a), fingerprint(path=b))


def test_short_or_silent_audio_is_a_decode_error(encoder: Encoder, tmp_path: Path) -> None:
    sf.write(tmp_path / "tick.wav", np.full(300, 0.5, np.float32), 16_000)  # under one 25 ms frame
    with pytest.raises(DecodeError, match="tick.wav: audio shorter than one 25 ms frame"):
        encoder.prepare("audio", tmp_path / "tick.wav")


def test_long_clip_is_the_mean_of_window_vectors(encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pooling only: the model forward is replaced by a fixed lookup (a stand-in, not the model)."""
    table = np.random.default_rng(4).standard_normal((5, 768)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    monkeypatch.setattr(encoder, "encode_fbank", lambda fb: table[fb[:, 0, 0].long().numpy()])
    items = [torch.full((2, 1024, 128), 0.0), torch.full((1, 1024, 128), 2.0)]
    items[0][1] = 1.0
    out = encoder.encode_prepared("audio", items)
    first = (table[0] + table[1]) / np.linalg.norm(table[0] + table[1])
    np.testing.assert_allclose(out, np.stack([first, table[2]]), atol=1e-6)
