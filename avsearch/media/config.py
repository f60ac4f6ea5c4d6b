"""Typed media-decoding settings, read once from configs/media.toml."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

from avsearch.errors import ConfigError
from avsearch.settings import load_sections

CONFIG_NAME = "media.toml"


def _positive_ints(section: object, table: str) -> None:
    for f in fields(section):  # type: ignore[arg-type]
        value = getattr(section, f.name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"media [{table}] {f.name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 178_956_970  # decompression-bomb guard, on the decoded (possibly reduced) size
    reduced_side: int = 2048  # large pictures decode reduced, shorter side kept at least this
    max_aspect_ratio: int = 32  # longer side / shorter side: bounds every short-side resize (N x S^2 pixels)
    max_jpeg_coefficients: int = 268_435_456  # progressive/multi-scan JPEGs: DCT coefficients held (2 B each)
    max_jpeg_scans: int = 100  # progressive/multi-scan JPEGs: scans (each a pass over all the coefficients)

    def __post_init__(self) -> None:
        _positive_ints(self, "image")


@dataclass(frozen=True)
class AudioLimits:
    max_sample_rate: int = 768_000  # Hz; the highest PCM rate in use, anything above is a corrupt header
    max_samples: int = 134_217_728  # stored (frames x kept channels) and resampled samples, 512 MiB float32
    max_stream_upsampling: int = 8  # a long file upsampled more than this is decoded whole, not streamed

    def __post_init__(self) -> None:
        _positive_ints(self, "audio")


@dataclass(frozen=True)
class PointCloudLimits:
    max_points: int = 20_000_000  # points a file may announce or hold; mesh faces twice this

    def __post_init__(self) -> None:
        _positive_ints(self, "pointcloud")


@dataclass(frozen=True)
class VideoLimits:
    max_duration_s: int = 36_000  # seconds a video may last (10 h), from its header
    max_pixels: int = 35_389_440  # pixels a frame may declare (8192 x 4320, 8K), before any frame is decoded
    max_aspect_ratio: int = 32  # longer side / shorter side of a frame, as [image]
    max_fps: int = 1000  # declared frame rates above this (or 0) are a corrupt header
    frame_side: int = 720  # sampled frames are scaled down so their shorter side is at most this
    sample_fps: float = 1.0  # frames kept per second of video
    dedupe_threshold: float = 2.0  # mean |difference| (0-255) of 32x32 RGB thumbnails: at or under, one item
    window_s: float = 10.0  # sound segment length (CLAP's window)
    hop_s: float = 5.0  # seconds between sound segment starts
    max_moments_per_file: int = 3  # moments of one file in one result list (the rest counted)
    merge_score_gap: float = 0.05  # hits of one file that touch merge when within this score of the moment's best

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(f"media [video] {f.name} must be a non-negative number, got {value!r}")
            if f.type == "int" and not isinstance(value, int):
                raise ConfigError(f"media [video] {f.name} must be an integer, got {value!r}")
            if f.name not in ("dedupe_threshold", "merge_score_gap") and value == 0:
                raise ConfigError(f"media [video] {f.name} must be positive, got {value!r}")
        if self.hop_s > self.window_s:
            raise ConfigError(
                f"media [video] hop_s {self.hop_s} exceeds window_s {self.window_s}: segments would leave gaps"
            )


@dataclass(frozen=True)
class MediaConfig:
    image: ImageLimits = ImageLimits()
    audio: AudioLimits = AudioLimits()
    pointcloud: PointCloudLimits = PointCloudLimits()
    video: VideoLimits = VideoLimits()


def load_media_config(path: str | Path | None = None) -> MediaConfig:
    """Read media.toml (the bundled one unless `path` is given); missing keys take the defaults."""
    return load_sections(MediaConfig, CONFIG_NAME, path)


@lru_cache(maxsize=1)
def media_config() -> MediaConfig:
    """The bundled settings, read once per process."""
    return load_media_config()
