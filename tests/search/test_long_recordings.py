"""A long sound file is cut into windows while it is read and resampled (media/audio.py audio_blocks ->
media/sound_windows.py recording_segments), as a video's sound is: the windows of the whole-file decode,
no [audio] max_samples bound, a silent one still refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avsearch.errors import DecodeError
from avsearch.indexing.moments import WHOLE, MomentPreparer, Moments, Streamed
from avsearch.media.audio import audio_blocks, load_audio
from avsearch.media.config import AudioLimits, MediaConfig
from avsearch.media.sound_windows import sound_segments
from avsearch.modalities import AUDIO


class Samples:
    """A preparer whose model input is the window itself (what the windows hold is compared)."""

    def __init__(self, rate: int, block: int = 1 << 20) -> None:
        self.sample_rate, self.block, self.loaded = rate, block, 0

    def load(self, path: Path) -> np.ndarray:
        self.loaded += 1
        return load_audio(path, self.sample_rate)

    def blocks(self, path: Path):  # noqa: ANN201
        return audio_blocks(path, self.sample_rate, self.block)

    def from_samples(self, wave: np.ndarray) -> np.ndarray:
        return np.array(wave)


def _noise(path: Path, seconds: float, rate: int, channels: int = 2, level: float = 0.3) -> Path:
    wave = level * np.random.default_rng(0).standard_normal((round(seconds * rate), channels))
    sf.write(path, wave, rate, subtype="FLOAT")
    return path


def _limit(monkeypatch: pytest.MonkeyPatch, samples: int) -> None:
    limits = MediaConfig(audio=AudioLimits(max_samples=samples))
    monkeypatch.setattr("avsearch.media.audio.media_config", lambda: limits)


@pytest.mark.parametrize(("rate", "to"), [(11_025, 8_000), (8_000, 6_000), (3_000, 3_000)])
def test_blocks_are_the_whole_decode(tmp_path: Path, rate: int, to: int) -> None:
    path = _noise(tmp_path / "n.wav", 2.3, rate, channels=3, level=0.6)  # some samples over 1: clipped after
    got = np.clip(np.concatenate(list(audio_blocks(path, to, block=999))), -1.0, 1.0)
    want = load_audio(path, to)
    assert got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("seconds", [23.3, 25.2, 30.0])  # the last window added, moved to the end, regular
def test_a_long_files_windows_are_the_whole_files(tmp_path: Path, seconds: float) -> None:
    path = _noise(tmp_path / "long.wav", seconds, 1_100)
    inner = Samples(800, block=777)
    got = MomentPreparer(inner, AUDIO)(path)
    want = sound_segments(load_audio(path, 800), 800)
    assert inner.loaded == 0  # never decoded whole
    assert isinstance(got, Moments) and got.spans == [(s, e) for s, e, _ in want] and len(want) >= 4
    assert got.spans[-1][1] == pytest.approx(seconds)  # the last window ends at the file's end
    assert all(np.allclose(a, b, rtol=0, atol=1e-6) for a, (_, _, b) in zip(got.items, want, strict=True))


def test_one_window_or_less_stays_one_whole_row(tmp_path: Path) -> None:
    path = _noise(tmp_path / "short.wav", 10.0, 1_100)
    inner = Samples(800)
    got = MomentPreparer(inner, AUDIO)(path)
    assert isinstance(got, Moments) and got.spans == [WHOLE] and inner.loaded == 1


def test_a_file_over_max_samples_is_indexed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _noise(tmp_path / "long.wav", 40.0, 1_000, channels=1)  # 40,000 samples
    _limit(monkeypatch, 20_000)
    with pytest.raises(DecodeError, match="max_samples"):
        load_audio(path, 1_000)
    got = MomentPreparer(Samples(1_000, block=500), AUDIO)(path)
    assert isinstance(got, Moments) and len(got.spans) == 7 and got.spans[-1] == (30.0, 40.0)


def test_a_silent_long_file_is_refused_as_before(tmp_path: Path) -> None:
    path = _noise(tmp_path / "hush.wav", 25.0, 1_000, level=1e-6)
    with pytest.raises(DecodeError, match="audio is silent"):
        load_audio(path, 1_000)
    for chunk in (0, 64):  # in the decode worker
        with pytest.raises(DecodeError, match="audio is silent"):
            MomentPreparer(Samples(1_000), AUDIO, chunk)(path)
    streamed = MomentPreparer(Samples(1_000), AUDIO, chunk=2)  # longer than a chunk: where it is encoded
    assert streamed(path) == Streamed(str(path))
    with pytest.raises(DecodeError, match="audio is silent"):
        streamed.silent(path)


def test_a_silent_long_file_is_listed_by_the_index(bridge_file, tmp_path: Path) -> None:
    """Its silence is known at its end: streamed a chunk at a time (chunk 2 of 3 windows) or prepared in the
    decode worker (chunk 64), it is one listed failure and gives no rows; a sounding one gives its windows."""
    from avsearch.indexing.pipeline import index_folder
    from avsearch.store.config import IngestConfig, SearchConfig
    from tests.search.fake_encoder import FakeLoader

    root = tmp_path / "media"
    root.mkdir()
    _noise(root / "hush.wav", 20.0, 4_000, level=1e-6)
    _noise(root / "loud.wav", 20.0, 4_000)
    for chunk in (2, 64):
        config = SearchConfig(ingest=IngestConfig(moment_chunk=chunk))
        s = index_folder(root, tmp_path / f"index{chunk}", bridge_file, encoder_loader=FakeLoader(), config=config)
        assert s.counts == {"image": 0, "audio": 3}, chunk
        [(path, why)] = s.failed
        assert Path(path).name == "hush.wav" and "audio is silent" in why and "\n" not in why


def test_clap_streams_a_long_file_to_the_whole_files_inputs(tmp_path: Path) -> None:
    """CLAP's own preparer (window-mean: no mel config needed) cuts while reading: its model inputs (int16
    round-tripped windows) are those of the whole-file decode cut."""
    from avsearch.encoders.clap import ClapAudioPreparer, LongClip

    path = _noise(tmp_path / "long.wav", 12.5, 4_410)
    prepare = ClapAudioPreparer(4_800, {}, 48_000, 4, LongClip.WINDOW_MEAN)
    got = MomentPreparer(prepare, AUDIO)(path)
    want = sound_segments(load_audio(path, 4_800), 4_800)
    assert isinstance(got, Moments) and got.spans == [(s, e) for s, e, _ in want] and len(want) == 2
    assert all(np.array_equal(a, prepare.from_samples(b)) for a, (_, _, b) in zip(got.items, want, strict=True))
