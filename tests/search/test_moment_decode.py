"""How a video's moments are decoded for the encoder (avsearch/indexing/moments.py; benchmarks/video.py
--e2e measured both): frames come out of PyAV already at the encoder's input side, and a long video is
decoded once, not a chunk of it first in the decode worker and then again where it is encoded."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from PIL import Image

from avsearch.encoders.clip import ClipImagePreparer
from avsearch.indexing.moments import MomentPreparer, Streamed
from avsearch.indexing.pipeline import index_folder
from avsearch.media.frame_sampling import sampled_frames
from avsearch.store.config import IngestConfig, SearchConfig
from tests.media.videos import make_video
from tests.search.fake_encoder import FakeEncoder, FakeLoader, FakePreparer

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # CLIP's


class Sized(FakePreparer):
    """The fake's decode step with an input side, recording the size of every frame it is given."""

    frame_side = 32
    sizes: list[tuple[int, int]] = []

    def from_image(self, image: Image.Image) -> np.ndarray:
        Sized.sizes.append(image.size)
        return super().from_image(image)


def test_frames_are_decoded_at_the_encoders_input_side(tmp_path) -> None:
    video = make_video(tmp_path / "walk.mp4", seconds=20, audio=False)  # 64 x 48: grey, red 12-18 s, grey
    Sized.sizes = []
    prepare = MomentPreparer(Sized("image"), "image")
    assert prepare(video).spans == [(0.0, 12.0), (12.0, 18.0), (18.0, 20.0)]
    assert Sized.sizes == [(43, 32)] * 3  # scaled by PyAV while decoding (64 x 48 without the side)


def test_clip_frames_scaled_on_decode_match_the_transform(tmp_path) -> None:
    # a 640 x 360 frame: CLIP's input from PyAV's 224-side frame against its own resize of the full frame
    video = make_video(tmp_path / "big.mp4", seconds=2, fps=2, size=(640, 360), square=(0, 2), audio=False)
    clip = ClipImagePreparer(224, MEAN, STD, "bicubic")
    assert clip.frame_side == 224
    (_, _, small), (_, _, full) = next(sampled_frames(video, frame_side=224)), next(sampled_frames(video))
    assert small.size == (398, 224) and full.size == (640, 360)
    a, b = clip.from_image(small).to(torch.float32), clip.from_image(full).to(torch.float32)
    assert a.shape == b.shape == (3, 224, 224)
    assert float((a - b).abs().mean()) < 2.0  # of 255: the same picture (the square's edges resampled)


class Counting(FakePreparer):
    """Counts the moments prepared, by modality."""

    made: Counter = Counter()

    def from_image(self, image) -> np.ndarray:
        Counting.made["image"] += 1
        return super().from_image(image)

    def from_samples(self, wave: np.ndarray) -> np.ndarray:
        Counting.made["audio"] += 1
        return super().from_samples(wave)


class CountingLoader(FakeLoader):
    def __call__(self, name: str, towers: tuple[str, ...]) -> FakeEncoder:
        space = "clip" if name.startswith("clip") else "clap"

        class Encoder(FakeEncoder):
            def preparer(self, modality: str) -> Counting:
                super().preparer(modality)
                return Counting(modality)

        return self.loaded.setdefault((name, towers), Encoder(name, space, towers))


def test_a_long_video_is_decoded_once(bridge_file, tmp_path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    make_video(root / "walk.mp4", seconds=24, tone=(5, 8))  # 3 frame items, 4 sound windows: over a chunk of 2
    assert isinstance(MomentPreparer(Counting("image"), "image", chunk=2)(root / "walk.mp4"), Streamed)
    assert isinstance(MomentPreparer(Counting("audio"), "audio", chunk=3)(root / "walk.mp4"), Streamed)
    assert not isinstance(MomentPreparer(Counting("audio"), "audio", chunk=4)(root / "walk.mp4"), Streamed)
    Counting.made = Counter()
    config = SearchConfig(ingest=IngestConfig(moment_chunk=2))
    summary = index_folder(root, tmp_path / "index", bridge_file, encoder_loader=CountingLoader(), config=config)
    assert summary.counts == {"image": 3, "audio": 4}
    assert Counting.made == {"image": 3, "audio": 4}  # each moment prepared once
