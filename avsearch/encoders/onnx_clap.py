"""LAION-CLAP's query towers on ONNX Runtime (one family of encoders/onnx_towers.py): the text tower
(RoBERTa + projection) and the audio tower (HTSAT-tiny with its fusion + projection).

Query side (no torch, no laion_clap, no librosa): text tokens by `tokenizers`, the audio's fusion mel in
numpy (encoders/clap_inputs.py) from a waveform decoded by soundfile and resampled by soxr
(media/audio.py). The audio tower is two graphs, because HTSAT's fusion branches on the `longer` flag:
`model.onnx` for a clip up to 10 s (repeat-padded; the four channels one mel) and `long.onnx` for a
longer one (the whole clip's mel shrunk to 10 s plus three crops), each exported for one clip a run
(HTSAT's reshapes fix the batch it was traced with). Only the default long_clip = "fusion" is exported;
"window-mean" stays on torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.encoders.onnx_parts import FINGERPRINT, Export, spec_options
from avsearch.encoders.onnx_session import normalized, run, session
from avsearch.errors import ConfigError
from avsearch.modalities import AUDIO, TEXT

TOWERS = (AUDIO, TEXT)
SHORT, LONG = "model.onnx", "long.onnx"  # the audio tower's graphs: clips up to 10 s, longer clips
AUDIO_CFG = "audio_cfg.json"  # beside the audio graphs: the front end's settings (laion_clap's audio_cfg)


def key(spec: Any, weights_dir: Path | str | None) -> str:
    """A name for CLAP's exports made without loading it (its fingerprint depends on code-side settings,
    so the export keeps the real one beside it): identities of every file it reads + its options."""
    return paths_key(spec, weights_dir)[0]


def paths_key(spec: Any, weights_dir: Path | str | None) -> tuple[str, dict[str, Path]]:
    from avsearch import __version__
    from avsearch.encoders.identity import fingerprint
    from avsearch.encoders.weights import find_file, resolve_weight

    paths = {k: resolve_weight(find_file(k).name, weights_dir) for k in spec.files}
    return fingerprint(spec.name, list(paths.values()), spec_options(spec) | {"avsearch": __version__}), paths


def supports(spec: Any, tower: str) -> bool:
    return tower == TEXT or spec.options.get("long_clip", "fusion") == "fusion"


def load(spec: Any, tower: str, weights_dir: Path | str | None, folder: Path) -> Any:
    fp = (folder / FINGERPRINT).read_text().strip()
    if tower == TEXT:
        return OnnxClapTextEncoder(spec, fp, paths_key(spec, weights_dir)[1], folder / SHORT)
    if not (folder / LONG).is_file() or not (folder / AUDIO_CFG).is_file():
        return None
    return OnnxClapAudioEncoder(spec, fp, folder)


class OnnxClapTextEncoder:
    """CLAP's text tower (RoBERTa + projection) on ONNX Runtime: ClapEncoder.encode_text's vectors."""

    runtime = "onnx"

    def __init__(self, spec: Any, fingerprint: str, paths: dict[str, Path], graph: Path) -> None:
        from avsearch.encoders.clap_inputs import ClapTokenizer

        self.name, self.space, self.dim = spec.name, spec.space, spec.dim
        self.modalities = (TEXT,)
        self._spec = spec
        self._fingerprint = fingerprint
        self.graph = graph
        self._model = None
        self._run = session(graph)
        self._tokenizer = ClapTokenizer(paths["roberta-vocab"], paths["roberta-merges"], spec.options["context_length"])
        self.text_batch = spec.options["batch_text"]

    def fingerprint(self) -> str:
        return self._fingerprint

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        raise ConfigError(f"{self.name} was loaded without its {modality} tower")

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        from avsearch.media.text import check_texts

        texts = [texts] if isinstance(texts, str) else list(texts)
        check_texts(texts)  # refuse the whole call before any forward
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return normalized(run(self._run, self._tokenizer(texts), self.text_batch))


class OnnxClapAudioEncoder:
    """CLAP's audio tower on ONNX Runtime: ClapEncoder.encode_files' vectors (long_clip = "fusion")."""

    runtime = "onnx"

    def __init__(self, spec: Any, fingerprint: str, folder: Path) -> None:
        self.name, self.space, self.dim = spec.name, spec.space, spec.dim
        self.modalities = (AUDIO,)
        self._spec = spec
        self._fingerprint = fingerprint
        self.graph = folder / SHORT
        self._model = None
        self._folder = folder
        self._graphs: dict[str, Any] = {SHORT: session(folder / SHORT)}  # long.onnx opened when a clip needs it
        self.audio_cfg = json.loads((folder / AUDIO_CFG).read_text())
        self.sample_rate = int(spec.options["sample_rate"])
        self.window_samples = int(spec.options["window_samples"])

    def fingerprint(self) -> str:
        return self._fingerprint

    def _require(self, modality: str) -> None:
        if modality != AUDIO:
            raise ConfigError(f"{self.name} was loaded without its {modality} tower")

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        raise ConfigError(f"{self.name} was loaded without its {TEXT} tower")

    def prepare_wave(self, wave: np.ndarray) -> Any:
        """An int16-quantised 48 kHz mono waveform (T,) -> its fusion input (clap_inputs.AudioInput)."""
        from avsearch.encoders.clap_inputs import clip_fusion_input

        return clip_fusion_input(wave, self.audio_cfg, self.window_samples)

    def prepare(self, modality: str, path: Path) -> Any:
        """Decode one file into its fusion input; DecodeError names a bad file."""
        from avsearch.encoders.clap_inputs import quantize_int16
        from avsearch.media.audio import load_audio

        self._require(modality)
        return self.prepare_wave(quantize_int16(load_audio(path, self.sample_rate)))

    def encode_prepared(self, modality: str, items: Sequence[Any]) -> np.ndarray:
        self._require(modality)
        if not items:
            return np.zeros((0, self.dim), np.float32)
        rows = []
        for item in items:
            name = LONG if item.longer else SHORT
            if name not in self._graphs:
                self._graphs[name] = session(self._folder / name)
            rows.append(run(self._graphs[name], (item.mel_fusion[None],)))
        return normalized(np.concatenate(rows))

    def encode_files(self, modality: str, paths: Sequence[Path]) -> np.ndarray:
        self._require(modality)
        return self.encode_prepared(modality, [self.prepare(modality, Path(p)) for p in paths])


# -- export side (torch and laion_clap are loaded) --------------------------------------------------------

TEXTS = ["a dog barking in the rain", "an orchestra tuning up", "x", " ".join(["long words"] * 60)]


def sample_waves(longer: bool) -> list[np.ndarray]:
    """A fixed 48 kHz clip for the audio export and its check: noise and a tone, 3 s (repeat-padded) or
    23 s (the long path)."""
    rng = np.random.default_rng(0)
    seconds = (23.0,) if longer else (3.0,)
    waves = []
    for s in seconds:
        t = np.arange(int(48_000 * s)) / 48_000
        tone = 0.3 * np.sin(2 * np.pi * 440 * t) * (t % 1.0 < 0.5)
        waves.append((0.05 * rng.standard_normal(t.size) + tone).astype(np.float32))
    return waves


def exports(encoder: Any, tower: str) -> list[Export]:
    import torch

    model = encoder._model
    if tower == TEXT:

        class Text(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                return self.model.get_text_embedding({"input_ids": input_ids, "attention_mask": attention_mask})

        tokens = encoder._tokens(TEXTS)
        samples = (tokens["input_ids"].numpy().astype(np.int64), tokens["attention_mask"].numpy().astype(np.int64))
        return [Export(SHORT, Text().eval(), ("input_ids", "attention_mask"), samples)]

    class Audio(torch.nn.Module):
        """get_audio_embedding without its normalisation, for clips all short or all longer than 10 s."""

        def __init__(self, longer: bool) -> None:
            super().__init__()
            self.model, self.longer = model, longer

        def forward(self, mel_fusion: torch.Tensor) -> torch.Tensor:
            make = torch.ones_like if self.longer else torch.zeros_like
            flag = make(mel_fusion[:, 0, 0, 0], dtype=torch.bool)
            out = self.model.audio_branch({"mel_fusion": mel_fusion, "longer": flag}, device=mel_fusion.device)
            return self.model.audio_projection(out["embedding"])

    def feed(longer: bool) -> Any:
        def mels(waves: list[np.ndarray]) -> tuple[np.ndarray]:
            from avsearch.encoders.clap_inputs import clip_fusion_input, quantize_int16

            items = [clip_fusion_input(quantize_int16(w), encoder.audio_cfg, encoder.window_samples) for w in waves]
            if any(i.longer != longer for i in items):
                raise ValueError("a sample clip of the wrong length for this graph")
            return (np.stack([i.mel_fusion for i in items]),)

        return mels

    return [
        Export(name, Audio(longer).eval(), ("mel_fusion",), sample_waves(longer), feed(longer), batch=False)
        for name, longer in ((SHORT, False), (LONG, True))
    ]


def torch_forward(encoder: Any, tower: str, inputs: Any) -> np.ndarray:
    """The torch encoder's vectors for the same inputs: tokens (ids, mask), or clips (48 kHz waveforms)
    through ClapEncoder's own front end."""
    import torch

    if tower == AUDIO:
        from avsearch.encoders.clap_inputs import quantize_int16

        return encoder.encode_prepared(AUDIO, [encoder.prepare_wave(quantize_int16(w)) for w in inputs])
    with torch.inference_mode():
        data = {"input_ids": torch.from_numpy(inputs[0]), "attention_mask": torch.from_numpy(inputs[1])}
        return normalized(encoder._model.get_text_embedding(data).float().cpu().numpy())


def extras(encoder: Any, tower: str) -> dict[str, str]:
    files = {FINGERPRINT: encoder.fingerprint() + "\n"}
    if tower == AUDIO:
        files[AUDIO_CFG] = json.dumps(encoder.audio_cfg, sort_keys=True)
    return files
