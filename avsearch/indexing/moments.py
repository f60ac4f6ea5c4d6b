"""Moments: what a file becomes in a table when it holds more than one moment (avsearch/media/video.py).

A video's frames, sampled about once a second with near-identical consecutive frames collapsed into one
time range, are rows of the image table; its sound track's segments (CLAP's 10 s window, a new one every
hop; configs/media.toml [video]) are rows of the audio table, as are the segments of an audio file longer
than one window. Every other file is one row, as before (span (None, None)).

`MomentPreparer` wraps an encoder's model-free decode step (picklable: decode worker processes run it),
so moments flow through the same decode workers, bad-file policy and committed batches as whole files;
`encode_moments` is encode_batches (embedding/stream.py) with each file's spans beside its vectors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.embedding.stream import DecodePlan, decode_batches, encode_batches, plan_decode
from avsearch.encoders.base import Encoder
from avsearch.errors import DecodeError, InputError
from avsearch.media.config import media_config
from avsearch.media.detect import detect
from avsearch.media.failures import Failure, reason
from avsearch.modalities import AUDIO, IMAGE, VIDEO

Span = tuple[float | None, float | None]  # (start, end) seconds of a moment; (None, None): the whole file
WHOLE: Span = (None, None)


@dataclass(frozen=True)
class Moments:
    """One file's prepared model inputs and the time range each stands for (empty: nothing of this
    modality in the file, such as the sound of a silent film)."""

    spans: list[Span]
    items: list[Any]


@dataclass(frozen=True)
class MomentPreparer:
    """An encoder's decode step for `modality`, extended to videos and long recordings.

    Pictures need `inner.from_image(PIL image)`; sounds `inner.load(path)` (the file's mono waveform at
    `inner.sample_rate`) and `inner.from_samples(wave)`. An encoder without them embeds whole files only.
    """

    inner: Any
    modality: str

    def __call__(self, path: Path) -> Moments:
        if detect(path).kind == VIDEO:
            return self._video(path)
        if self.modality == AUDIO and hasattr(self.inner, "load"):
            return self._recording(self.inner.load(path))
        return Moments([WHOLE], [self.inner(path)])

    def _recording(self, wave: np.ndarray) -> Moments:
        from avsearch.media.video import sound_segments

        limits = media_config().video
        rate = int(self.inner.sample_rate)
        if wave.shape[0] <= round(limits.window_s * rate):  # one window or less: the whole file, one row
            return Moments([WHOLE], [self.inner.from_samples(wave)])
        segments = sound_segments(wave, rate, limits.window_s, limits.hop_s)
        return Moments([(s, e) for s, e, _ in segments], [self.inner.from_samples(w) for _, _, w in segments])

    def _video(self, path: Path) -> Moments:
        from avsearch.media.video import audio_track, probe, sampled_frames, sound_segments

        if self.modality == IMAGE:
            if not hasattr(self.inner, "from_image"):
                raise DecodeError(f"{path}: a video; this index's picture encoder takes whole pictures only")
            if not probe(path).has_video:
                return Moments([], [])  # a sound in a video container: its sound is the audio table's
            spans, items = [], []
            for start, end, frame in sampled_frames(path):
                spans.append((start, end))
                items.append(self.inner.from_image(frame))
            return Moments(spans, items)
        if self.modality != AUDIO or not hasattr(self.inner, "from_samples"):
            raise DecodeError(f"{path}: a video; this index's {self.modality} encoder cannot read its sound")
        wave = audio_track(path, int(self.inner.sample_rate))
        if wave is None:
            if not probe(path).has_video:
                raise DecodeError(f"{path}: no video stream and a silent or missing sound track: nothing to index")
            return Moments([], [])  # a silent film: its frames are the image table's
        limits = media_config().video
        segments = sound_segments(wave, int(self.inner.sample_rate), limits.window_s, limits.hop_s)
        return Moments([(s, e) for s, e, _ in segments], [self.inner.from_samples(w) for _, _, w in segments])


def encode_moments(
    encoder: Encoder, modality: str, batches: Sequence[Sequence[str]], plan: DecodePlan | None = None
) -> Iterator[tuple[list[int], np.ndarray, list[Failure], list[list[Span]]]]:
    """For each batch of paths, in order: (positions in the batch that were embedded, the vectors of their
    moments (M, d) in order, failures (path, reason), each embedded file's spans: its rows' time ranges)."""
    if not batches:
        return
    if not hasattr(encoder, "preparer"):  # whole files only (the encoder reads them itself)
        for ok, vectors, failed in encode_batches(encoder, modality, batches, plan):
            yield ok, vectors, failed, [[WHOLE] for _ in ok]
        return
    if plan is None:
        from avsearch.store.config import load_search_config

        cfg = load_search_config().ingest
        plan = plan_decode(encoder, len(batches), cfg.decode, cfg.decode_workers, cfg.prefetch_batches)
    prepare = MomentPreparer(encoder.preparer(modality), modality)  # type: ignore[attr-defined]
    for paths, decoded in zip(batches, decode_batches(prepare, batches, plan), strict=True):
        ok = [j for j, d in enumerate(decoded) if not isinstance(d, InputError)]
        failed = [(p, reason(d, p)) for p, d in zip(paths, decoded, strict=True) if isinstance(d, InputError)]
        items = [item for j in ok for item in decoded[j].items]
        empty = np.zeros((0, encoder.dim), np.float32)
        vectors = encoder.encode_prepared(modality, items) if items else empty  # type: ignore[attr-defined]
        yield ok, vectors, failed, [decoded[j].spans for j in ok]
