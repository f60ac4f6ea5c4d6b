"""Moments: what a file becomes in a table when it holds more than one moment (avsearch/media/video.py).

A video's frames, sampled about once a second with near-identical consecutive frames collapsed into one
time range, are rows of the image table; its sound track's segments (CLAP's 10 s window, a new one every
hop; configs/media.toml [video]) are rows of the audio table, as are the segments of an audio file longer
than one window. Every other file is one row, as before (span (None, None)).

`MomentPreparer` wraps an encoder's model-free decode step (picklable: decode worker processes run it),
so moments flow through the same decode workers, bad-file policy and committed batches as whole files;
`encode_moments` is encode_batches (embedding/stream.py) with each file's spans beside its vectors.

Memory stays bounded for long files: a file with more moments than one chunk (configs/search.toml
[ingest] moment_chunk) comes out of the decode worker as `Streamed`, and is prepared again where it is
encoded, a chunk of moments at a time (sampling and segmenting are lazy), so at most a chunk of prepared
items is held; only its vectors (a few KB a moment) are kept until its rows are written, so a file's rows
still go in one commit with the removal of its stale ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avsearch.embedding.stream import DecodePlan, decode_batches, encode_batches, plan_decode
from avsearch.encoders.base import Encoder
from avsearch.errors import DecodeError, InputError
from avsearch.indexing.progress import NoProgress, Progress
from avsearch.media.config import media_config
from avsearch.media.detect import detect
from avsearch.media.failures import Failure, reason
from avsearch.media.sound_windows import SilentTrack
from avsearch.modalities import AUDIO, IMAGE, VIDEO

Span = tuple[float | None, float | None]  # (start, end) seconds of a moment; (None, None): the whole file
WHOLE: Span = (None, None)
# (span, decode step, its input): a moment not yet prepared (a frame or a window of samples, held one at a time)
Source = tuple[Span, Callable[[Any], Any], Any]


@dataclass(frozen=True)
class Moments:
    """One file's prepared model inputs and the time range each stands for (empty: nothing of this
    modality in the file, such as the sound of a silent film)."""

    spans: list[Span]
    items: list[Any]


@dataclass(frozen=True)
class Streamed:
    """A file with more moments than one chunk: prepared again where it is encoded, a chunk at a time."""

    path: str


@dataclass(frozen=True)
class MomentPreparer:
    """An encoder's decode step for `modality`, extended to videos and long recordings.

    Pictures need `inner.from_image(PIL image)`; sounds `inner.load(path)` (the file's mono waveform at
    `inner.sample_rate`) and `inner.from_samples(wave)`. An encoder without them embeds whole files only.
    chunk: the most moments of one file prepared at once (0: no bound); a file with more is `Streamed`.
    """

    inner: Any
    modality: str
    chunk: int = 0

    def __call__(self, path: Path) -> Moments | Streamed:
        if self.chunk and self._long_file(path):
            return Streamed(str(path))
        spans: list[Span] = []
        items: list[Any] = []
        try:
            for span, step, source in self.sources(path):
                if self.chunk and len(items) == self.chunk:  # one more than a chunk: prepared where it is encoded
                    return Streamed(str(path))
                spans.append(span)
                items.append(step(source))
        except SilentTrack:
            return self.silent(path)
        return Moments(spans, items)

    def _long_file(self, path: Path) -> bool:
        """A video or a streamed recording with more moments than a chunk by its declared length (frames
        before collapsing, sound windows): streamed at once, not after a chunk of its moments was decoded
        and prepared for nothing."""
        limits = media_config().video
        kind = detect(path).kind
        if kind == VIDEO:
            from avsearch.media.video import probe

            duration = probe(path).duration
            if self.modality == IMAGE:
                return math.ceil(duration * limits.sample_fps) > self.chunk
        elif kind == AUDIO and self.modality == AUDIO and (length := self._streamed_length(path)):
            duration = length / int(self.inner.sample_rate)
        else:
            return False
        return 1 + math.ceil(max(0.0, duration - limits.window_s) / limits.hop_s) > self.chunk

    def chunks(self, path: Path) -> Iterator[Moments]:
        """The file's moments, `chunk` at a time (the caller drops each before asking for the next)."""
        spans: list[Span] = []
        items: list[Any] = []
        for span, step, source in self.sources(path):
            spans.append(span)
            items.append(step(source))
            if len(items) == self.chunk:
                part, spans, items = Moments(spans, items), [], []
                yield part
                del part
        if items:
            yield Moments(spans, items)

    def sources(self, path: Path) -> Iterator[Source]:
        """The file's moments in time order, each not yet prepared (lazy: one frame or window at a time)."""
        if detect(path).kind == VIDEO:
            yield from self._video(path)
        elif self.modality == AUDIO and self._streamed_length(path):
            yield from self._streamed(path)
        elif self.modality == AUDIO and hasattr(self.inner, "load"):
            yield from self._recording(self.inner.load(path))
        else:
            yield WHOLE, self.inner, path

    def _streamed_length(self, path: Path) -> int | None:
        """A sound file longer than one window, its length at the encoder's rate by its header, when the
        encoder reads sound in blocks (`inner.blocks`) and media/audio.py streams the file: it is cut while
        read. None for the rest (decoded whole: one window or less is one row; the other containers)."""
        if not (hasattr(self.inner, "blocks") and hasattr(self.inner, "from_samples")):
            return None
        from avsearch.media.audio import streamed_length

        rate = int(self.inner.sample_rate)
        length = streamed_length(path, rate)
        return length if length is not None and length > round(media_config().video.window_s * rate) else None

    def _streamed(self, path: Path) -> Iterator[Source]:
        from avsearch.media.sound_windows import recording_segments

        limits = media_config().video
        rate = int(self.inner.sample_rate)
        # cut while read (bounded memory, no [audio] max_samples); SilentTrack at the end: see `silent`
        for start, end, window in recording_segments(
            self.inner.blocks(path), rate, limits.window_s, limits.hop_s, path
        ):
            yield (start, end), self.inner.from_samples, window

    def _recording(self, wave: np.ndarray) -> Iterator[Source]:
        limits = media_config().video
        rate = int(self.inner.sample_rate)
        if wave.shape[0] <= round(limits.window_s * rate):  # one window or less: the whole file, one row
            yield WHOLE, self.inner.from_samples, wave
            return
        yield from self._segments(wave)

    def _segments(self, wave: np.ndarray) -> Iterator[Source]:
        from avsearch.media.sound_windows import sound_segments

        limits = media_config().video
        for start, end, window in sound_segments(wave, int(self.inner.sample_rate), limits.window_s, limits.hop_s):
            yield (start, end), self.inner.from_samples, window

    def _video(self, path: Path) -> Iterator[Source]:
        from avsearch.media.frame_sampling import frame_side_for, sampled_frames
        from avsearch.media.sound_windows import sound_track_segments
        from avsearch.media.video import probe

        if self.modality == IMAGE:
            if not hasattr(self.inner, "from_image"):
                raise DecodeError(f"{path}: a video; this index's picture encoder takes whole pictures only")
            if not probe(path).has_video:
                return  # a sound in a video container: its sound is the audio table's
            for start, end, frame in sampled_frames(path, frame_side=frame_side_for(self.inner)):
                yield (start, end), self.inner.from_image, frame
            return
        if self.modality != AUDIO or not hasattr(self.inner, "from_samples"):
            raise DecodeError(f"{path}: a video; this index's {self.modality} encoder cannot read its sound")
        limits = media_config().video
        # cut while decoded (bounded memory); SilentTrack at the end of a silent track: see `silent`
        for start, end, window in sound_track_segments(
            path, int(self.inner.sample_rate), limits.window_s, limits.hop_s
        ):
            yield (start, end), self.inner.from_samples, window

    def silent(self, path: Path) -> Moments:
        """A video whose sound track was silent: no sound moments (a silent film: its frames are the image
        table's), or DecodeError when it has no pictures either; a silent sound file: DecodeError, as
        load_audio's."""
        from avsearch.media.video import probe

        if detect(path).kind != VIDEO:
            raise DecodeError(f"{path}: audio is silent (peak below one 16-bit step)")
        if not probe(path).has_video:
            raise DecodeError(f"{path}: no video stream and a silent or missing sound track: nothing to index")
        return Moments([], [])


def encode_moments(
    encoder: Encoder,
    modality: str,
    batches: Sequence[Sequence[str]],
    plan: DecodePlan | None = None,
    chunk: int | None = None,
    progress: Progress | None = None,
    stage: str = "",
) -> Iterator[tuple[list[int], np.ndarray, list[Failure], list[list[Span]]]]:
    """For each batch of paths, in order: (positions in the batch that were embedded, the vectors of their
    moments (M, d) in order, failures (path, reason), each embedded file's spans: its rows' time ranges).

    chunk: the most moments prepared and encoded at once (default configs/search.toml [ingest]
    moment_chunk); a longer file is reported on `progress` as `stage: <its name>`, moments encoded."""
    if not batches:
        return
    if not hasattr(encoder, "preparer"):  # whole files only (the encoder reads them itself)
        for ok, vectors, failed in encode_batches(encoder, modality, batches, plan):
            yield ok, vectors, failed, [[WHOLE] for _ in ok]
        return
    if plan is None or chunk is None:
        from avsearch.store.config import load_search_config

        cfg = load_search_config().ingest
        chunk = chunk or cfg.moment_chunk
        plan = plan or plan_decode(encoder, len(batches), cfg.decode, cfg.decode_workers, cfg.prefetch_batches)
    prepare = MomentPreparer(encoder.preparer(modality), modality, chunk)  # type: ignore[attr-defined]
    for paths, decoded in zip(batches, decode_batches(prepare, batches, plan), strict=True):
        done: dict[int, tuple[list[Span], np.ndarray]] = {}
        short = [j for j, d in enumerate(decoded) if isinstance(d, Moments)]
        # a model call: the batch's files (one item each: batch_size as before), or a chunk of moments
        step = max(chunk, len(paths))
        flat = _encode(encoder, modality, [item for j in short for item in decoded[j].items], step)
        at = 0
        for j in short:
            spans = decoded[j].spans
            done[j], decoded[j] = (spans, flat[at : at + len(spans)]), None  # its items released
            at += len(spans)
        for j, d in enumerate(decoded):
            if isinstance(d, Streamed):
                decoded[j] = got = _stream(encoder, modality, prepare, Path(d.path), progress or NoProgress(), stage)
                if not isinstance(got, InputError):
                    done[j] = got
        ok = sorted(done)
        failed = [(p, reason(d, p)) for p, d in zip(paths, decoded, strict=True) if isinstance(d, InputError)]
        vectors = np.concatenate([done[j][1] for j in ok]) if ok else _empty(encoder)
        yield ok, vectors, failed, [done[j][0] for j in ok]


def _encode(encoder: Encoder, modality: str, items: list[Any], step: int) -> np.ndarray:
    """Prepared items encoded `step` at a time (a model call's inputs bounded as the preparation is)."""
    parts = [encoder.encode_prepared(modality, items[i : i + step]) for i in range(0, len(items), step)]  # type: ignore[attr-defined]
    return np.concatenate(parts) if parts else _empty(encoder)


def _stream(
    encoder: Encoder, modality: str, prepare: MomentPreparer, path: Path, progress: Progress, stage: str
) -> tuple[list[Span], np.ndarray] | InputError:
    """A long file's spans and vectors, its moments prepared and encoded a chunk at a time; or why it failed
    (the bad-file policy: its vectors so far are dropped)."""
    spans: list[Span] = []
    parts: list[np.ndarray] = []
    shown = f"{stage}: {path.name}" if stage else path.name
    progress.start(shown, None)
    try:
        for part in prepare.chunks(path):
            parts.append(encoder.encode_prepared(modality, part.items))  # type: ignore[attr-defined]
            spans += part.spans
            progress.advance(shown, len(part.spans))
            del part  # before the next chunk is prepared: one chunk held at a time
    except SilentTrack:  # known at its end: the vectors of its silent windows are dropped
        try:
            return prepare.silent(path).spans, _empty(encoder)
        except InputError as exc:
            return exc
    except InputError as exc:
        return exc
    finally:
        progress.finish(shown)
    return spans, np.concatenate(parts) if parts else _empty(encoder)


def _empty(encoder: Encoder) -> np.ndarray:
    return np.zeros((0, encoder.dim), np.float32)
