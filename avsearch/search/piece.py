"""A piece of a longer file as a query: `query --audio long.wav --start 60 --end 70`, `query --video
clip.mp4 [--from audio|frames]`.

The piece's sound (a recording's samples, or a video's sound track, [start, end] decoded alone:
media/sound_pieces.py) is prepared by the encoder's own decode step from samples (as a long recording's
segments are at index time) and embedded as one clip; its pictures (a video's frames sampled over
[start, end] as at index time) are embedded one by one and averaged, re-normalised (one vector for the
shot or scene the piece shows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsearch.errors import DecodeError, InputError
from avsearch.media.detect import detect
from avsearch.media.failures import NOT_MEDIA
from avsearch.media.signatures import NOUN
from avsearch.modalities import AUDIO, IMAGE, VIDEO

AUDIO_SOURCE, FRAMES_SOURCE = "audio", "frames"
SOURCE_OF = {AUDIO: AUDIO_SOURCE, IMAGE: FRAMES_SOURCE}  # `--audio video.mp4`: its sound; `--image`: its frames


class SilentSound(InputError):
    """A video whose sound track is silent or missing: its frames still query when both were asked for."""


@dataclass(frozen=True)
class Piece:
    """[start, end] seconds of `path` (None: from its start, to its end), heard (AUDIO) or seen (IMAGE)."""

    path: Path
    modality: str
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise InputError(f"--{name} must be a number of seconds, 0 or more; got {value}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise InputError(f"--end {self.end:g} must come after --start {self.start:g}")

    @property
    def label(self) -> str:
        """The query as results name it: the path, with its range as a media fragment."""
        if self.start is None and self.end is None:
            return str(self.path)
        return f"{self.path}#t={self.start or 0.0:g}" + ("" if self.end is None else f",{self.end:g}")


def pieces(path: Path, start: float | None, end: float | None, source: str | None) -> list[Piece]:
    """The pieces a query file gives: a video's sound and/or frames (source "audio", "frames", None: both
    it holds), a sound file's samples; InputError for other files or a source they cannot give."""
    found = detect(path)
    if found.reason is not None:  # broken media: its reason, as every query file's
        raise DecodeError(f"{path}: {found.reason}")
    kind = found.kind
    if kind == AUDIO:
        if source == FRAMES_SOURCE:
            raise InputError(f"{path}: a sound has no frames (--from frames is for videos)")
        return [Piece(path, AUDIO, start, end)]
    if kind != VIDEO:
        what = f"by its content it is a {NOUN[kind]}" if kind else NOT_MEDIA
        raise InputError(f"{path}: not a video or a sound ({what}): --video, --start and --end take one")
    from avsearch.media.video import probe

    info = probe(path)
    wanted = {AUDIO_SOURCE: [AUDIO], FRAMES_SOURCE: [IMAGE], None: [IMAGE, AUDIO]}[source]
    held = [m for m in wanted if (info.has_video if m == IMAGE else info.has_audio)]
    if not held:
        raise InputError(f"{path}: the video holds no {'pictures' if wanted == [IMAGE] else 'sound'} to query with")
    return [Piece(path, m, start, end) for m in held]


def search_pieces(
    path: Path, start: float | None, end: float | None, source: str | None, search: Callable[[Piece], list]
) -> list:
    """The result lists of each piece `pieces` gives, searched by `search`: a video's silent sound track is
    left out when its frames query too (no source asked for), and refused when it is all that was asked."""
    wanted = pieces(path, start, end, source)
    found: list = []
    for piece in wanted:
        try:
            found += search(piece)
        except SilentSound:
            if source is not None or len(wanted) == 1:
                raise
    return found


def piece_vector(encoder, piece: Piece) -> np.ndarray:
    """The piece embedded by `encoder` (its tower for piece.modality): (1, d), L2-normalised."""
    prepare = encoder.preparer(piece.modality) if hasattr(encoder, "preparer") else None
    if piece.modality == AUDIO:
        if prepare is None or not hasattr(prepare, "from_samples"):
            raise InputError(f"{encoder.name} takes whole sound files only, not a piece of one")
        return encoder.encode_prepared(AUDIO, [prepare.from_samples(_samples(piece, int(prepare.sample_rate)))])
    if prepare is None or not hasattr(prepare, "from_image"):
        raise InputError(f"{encoder.name} takes whole pictures only, not a video's frames")
    from avsearch.media.frame_sampling import frame_side_for, sampled_frames

    frames = [
        prepare.from_image(image)
        for start, end, image in sampled_frames(piece.path, frame_side=frame_side_for(prepare))
        if end > (piece.start or 0.0) and (piece.end is None or start < piece.end)
    ]
    if not frames:
        raise InputError(f"{piece.label}: no frame of the video in that range")
    mean = encoder.encode_prepared(IMAGE, frames).mean(axis=0, keepdims=True)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def _samples(piece: Piece, rate: int) -> np.ndarray:
    """The piece's sound, decoded alone (media/sound_pieces.py: a piece of a 10-hour file costs its seconds)."""
    from avsearch.media.sound_pieces import recording_piece, track_piece
    from avsearch.media.sound_windows import SILENCE_PEAK

    start, video = piece.start or 0.0, detect(piece.path).kind == VIDEO
    if video:
        got = track_piece(piece.path, rate, start, piece.end)
        if got is None or got.length == 0:
            raise SilentSound(f"{piece.path}: the video's sound track is silent or missing")
    else:
        got = recording_piece(piece.path, rate, start, piece.end)
    wave = got.wave
    if len(wave) < rate // 100:  # under 10 ms
        raise InputError(f"{piece.label}: the range holds no sound (the recording lasts {got.length / rate:.1f} s)")
    if float(np.abs(wave).max()) < SILENCE_PEAK:  # a whole file's silence told as when it was decoded whole
        where = "" if piece.start is None and piece.end is None else " in that range"
        if video:
            raise SilentSound(f"{piece.label}: the video's sound track is silent{where}")
        raise DecodeError(f"{piece.label}: audio is silent{where} (peak below one 16-bit step)")
    return wave
