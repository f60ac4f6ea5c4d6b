"""Video decoding (avsearch/media/video.py) on videos generated here with PyAV, with known events at known
times: a red square on a grey static shot from 12 to 18 s, a 440 Hz tone in the sound from 30 to 35 s."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from avsearch.errors import ConfigError, DecodeError
from avsearch.media.config import VideoLimits, load_media_config
from avsearch.media.frame_sampling import sampled_frames
from avsearch.media.sound_windows import SilentTrack, audio_track, sound_segments, sound_track_segments, stream_segments
from avsearch.media.video import is_video, probe
from tests.media.videos import (  # noqa: F401
    FPS,
    GREY,
    RED,
    SECONDS,
    SQUARE,
    TONE,
    H,
    W,
    encode_frames,
    jpeg_video,
    make_video,
    vfr_video,
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {
        "mp4": make_video(folder / "event.mp4"),  # x264's default keyframe spacing: one at the start
        "short_gop": make_video(folder / "gop.mp4", audio=False, options={"g": "5", "sc_threshold": "0"}),
        # B-frames: frames come out of the decoder in another order than their packets
        "bframes": make_video(
            folder / "bframes.mkv", audio=False, options={"preset": "fast", "g": "10", "bf": "3", "sc_threshold": "0"}
        ),
        "silent_film": make_video(folder / "silent.mp4", audio=False),
        "sound_only": make_video(folder / "sound.mp4", video=False),
        "webm": make_video(folder / "event.webm", seconds=20, square=(12, 18), audio=False, codec="libvpx-vp9"),
    }


def _red(image: Image.Image) -> bool:
    r, g, b = image.getpixel((image.width // 2, image.height // 2))
    return r > 150 and g < 100 and b < 100


def _one_line(exc: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and message.startswith(str(path)), message
    for word in words:
        assert word in message, message


def test_probe_reads_the_header(videos):
    info = probe(videos["mp4"])
    assert (info.width, info.height, info.fps) == (W, H, FPS)
    assert info.duration == pytest.approx(SECONDS, abs=0.1)
    assert info.has_video and info.has_audio and (info.audio_rate, info.audio_channels) == (44_100, 2)
    sound = probe(videos["sound_only"])
    assert not sound.has_video and sound.has_audio and sound.width == 0
    assert not probe(videos["silent_film"]).has_audio


@pytest.mark.parametrize("kind", ["mp4", "short_gop", "bframes", "webm"])
def test_every_sample_about_once_a_second_with_its_time(videos, kind):
    """dedupe_threshold=-1 keeps every sample (identical frames too): one
    a second, timed 0, 1, 2, ..., each showing the square exactly when 12 <= t < 18."""
    duration = probe(videos[kind]).duration
    items = list(sampled_frames(videos[kind], fps=1.0, dedupe_threshold=-1))
    assert [start for start, _, _ in items] == pytest.approx(list(range(round(duration))))
    assert all(end == pytest.approx(start + 1) for start, end, _ in items)
    seen = [start for start, _, image in items if _red(image)]
    assert seen == pytest.approx([12, 13, 14, 15, 16, 17])


@pytest.mark.parametrize("kind", ["mp4", "short_gop", "bframes", "webm"])
def test_static_stretches_collapse_into_ranges(videos, kind):
    duration = probe(videos[kind]).duration
    items = list(sampled_frames(videos[kind]))
    assert [(start, end, _red(image)) for start, end, image in items] == [
        (0.0, pytest.approx(12.0, abs=1.0), False),
        (pytest.approx(12.0, abs=1.0), pytest.approx(18.0, abs=1.0), True),
        (pytest.approx(18.0, abs=1.0), pytest.approx(duration), False),
    ]
    for _, _, image in items:
        assert image.mode == "RGB" and image.size == (W, H)
        assert np.asarray(image).dtype == np.uint8


def test_a_higher_rate_and_threshold_settings(videos):
    items = list(sampled_frames(videos["mp4"], fps=2.0, dedupe_threshold=-1))
    assert len(items) == 80 and items[25][0] == pytest.approx(12.5) and _red(items[25][2])
    assert not _red(items[23][2]) and _red(items[24][2]) and _red(items[35][2]) and not _red(items[36][2])
    # a threshold over the square's difference (it covers a quarter of the frame) collapses everything
    assert len(list(sampled_frames(videos["mp4"], dedupe_threshold=200))) == 1


def test_sampling_skips_groups_of_pictures(videos):
    """With a keyframe every 0.5 s only the groups holding a sampled time are decoded, and only as far as
    it; decoding everything gives the same items."""
    lazy: dict = {}
    everything: dict = {}
    for path in (videos["short_gop"], videos["bframes"]):
        got = [(s, e, np.asarray(i)) for s, e, i in sampled_frames(path, mode="lazy", stats=lazy)]
        want = [(s, e, np.asarray(i)) for s, e, i in sampled_frames(path, mode="all", stats=everything)]
        assert [(s, e) for s, e, _ in got] == [(s, e) for s, e, _ in want]
        assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(got, want, strict=True))
    assert everything["decoded"] >= 0.9 * SECONDS * FPS
    lazy_short: dict = {}
    list(sampled_frames(videos["short_gop"], stats=lazy_short))
    assert lazy_short["decoded"] < 0.5 * SECONDS * FPS, lazy_short


def test_frames_bounded_in_size(tmp_path):
    path = make_video(tmp_path / "wide.mp4", seconds=3, size=(320, 96), audio=False, square=None)
    items = list(sampled_frames(path, frame_side=48))
    assert [image.size for _, _, image in items] == [(160, 48)]


def test_variable_frame_rate_frames_at_their_own_times(tmp_path):
    """Frames 50 ms to 1.45 s apart: each sampled time shows the frame its timestamp puts on screen (counting
    frames at the average rate would show grey at 1 s and red at 2 s only)."""
    path = vfr_video(tmp_path / "vfr.mp4", [0, 100, 150, 900, 1000, 1050, 2500, 2600, 2990], red=(900, 2500))
    got = [(start, end, _red(image)) for start, end, image in sampled_frames(path)]
    assert got == [(0.0, 1.0, False), (1.0, 3.0, True), (3.0, pytest.approx(3.09, abs=0.02), False)]


def test_8k_frames_are_decoded_reduced(tmp_path):
    (item,) = sampled_frames(jpeg_video(tmp_path / "8k.avi", (7680, 4320)))
    assert item[:2] == (0.0, 2.0) and item[2].size == (1280, 720)  # frame_side 720: the shorter side


def test_rotated_video_is_upright(tmp_path):
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(90)  # shown turned 90 degrees counter-clockwise, as phones record
        image = np.full((48, 64, 3), GREY, np.uint8)
        image[:, :8] = RED  # the left edge: after a quarter turn counter-clockwise, the bottom edge
        encode_frames(out, stream, [image] * 20)
    (_, _, shown), *_ = sampled_frames(path)
    assert shown.size == (48, 64)
    pixels = np.asarray(shown)
    assert pixels[-2, 24, 0] > 150 and pixels[1, 24, 0] < 120


def test_audio_track_finds_the_tone(videos):
    wave = audio_track(videos["mp4"], sample_rate=48_000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == pytest.approx(SECONDS * 48_000, abs=48_000 * 0.1)
    tenths = np.sqrt((wave[: len(wave) // 4800 * 4800].reshape(-1, 4800) ** 2).mean(axis=1))
    loud = np.flatnonzero(tenths > 0.1) / 10
    assert loud[0] == pytest.approx(TONE[0], abs=0.15) and loud[-1] + 0.1 == pytest.approx(TONE[1], abs=0.15)
    assert np.abs(wave[: 29 * 48_000]).max() < 0.01
    assert np.abs(wave[31 * 48_000 : 34 * 48_000]).max() == pytest.approx(0.25, abs=0.03)  # channels averaged
    # the tone's pitch survives resampling: 440 Hz at 16 kHz
    low = audio_track(videos["mp4"], sample_rate=16_000)
    piece = low[31 * 16_000 : 33 * 16_000]
    assert np.argmax(np.abs(np.fft.rfft(piece))) * 16_000 / len(piece) == pytest.approx(440, abs=1)


def test_audio_track_none_without_sound(videos, tmp_path):
    assert audio_track(videos["silent_film"]) is None
    assert audio_track(make_video(tmp_path / "hush.mp4", seconds=3, tone=None)) is None  # a silent track
    assert audio_track(videos["sound_only"]) is not None
    with pytest.raises(DecodeError) as exc:
        list(sampled_frames(videos["sound_only"]))
    _one_line(exc, videos["sound_only"], "no video stream")


@pytest.mark.parametrize(
    ("seconds", "hop", "starts"),
    [(40, 5, [0, 5, 10, 15, 20, 25, 30]), (43, 5, [0, 5, 10, 15, 20, 25, 30, 33]), (40, 10, [0, 10, 20, 30])],
)
def test_sound_segments_cover_the_recording(seconds, hop, starts):
    rate = 100
    wave = np.arange(seconds * rate, dtype=np.float32)
    segments = sound_segments(wave, rate, window_s=10.0, hop_s=hop)
    assert [start for start, _, _ in segments] == starts
    assert segments[-1][1] == seconds
    covered = np.zeros(len(wave), bool)
    for start, end, samples in segments:
        assert end - start == 10 and len(samples) == 10 * rate
        assert samples[0] == start * rate  # the samples are the recording's own, at their place
        covered[round(start * rate) : round(end * rate)] = True
    assert covered.all()


def test_short_recording_is_one_segment():
    wave = np.ones(700, np.float32)
    (segment,) = sound_segments(wave, 100, window_s=10.0, hop_s=5.0)
    assert segment[:2] == (0.0, 7.0) and len(segment[2]) == 700
    with pytest.raises(ValueError):
        sound_segments(wave, 100, window_s=10.0, hop_s=12.0)  # gaps between windows


def test_segments_of_the_sound_track_find_the_tone(videos):
    wave = audio_track(videos["mp4"], sample_rate=48_000)
    segments = sound_segments(wave, 48_000)
    loud = [(s, e) for s, e, samples in segments if np.sqrt((samples**2).mean()) > 0.1]
    # the windows holding the whole tone (AAC's padding makes the track a few ms longer than 40 s, so the
    # last window, ending at the track's end, starts just after 30 s)
    assert loud == [(s, e) for s, e, _ in segments if s <= TONE[0] + 0.05 and e >= TONE[1]]
    # (and the window that would have started at 30 s moved to the end: no near-copy of it)
    assert loud[0] == (25.0, 35.0) and len(loud) == 2 and loud[1][0] == pytest.approx(30.0, abs=0.05)


@pytest.mark.parametrize("n", [1, 999, 1000, 1001, 1500, 1549, 1550, 1551, 2000, 2049, 2050, 2051, 2499, 7777])
def test_windows_cut_from_a_stream_are_the_whole_recordings(n):
    """At 100 Hz (1,000-sample windows, a 500-sample hop, tails up to 50 samples move the last window),
    lengths on each side of the last window's rule, in blocks smaller and larger than a window."""
    wave = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    want = sound_segments(wave, 100)
    for size in (7, 333, 5000):
        got = list(stream_segments(iter([wave[i : i + size] for i in range(0, n, size)]), 100))
        assert [(s, e) for s, e, _ in got] == [(s, e) for s, e, _ in want], size
        assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(got, want, strict=True))


def test_a_sound_track_cut_while_decoded_equals_the_whole_track_cut(videos):
    """The index's streamed decode + resample (44.1 -> 16 kHz) gives the windows of the whole-track decode."""
    want = sound_segments(audio_track(videos["mp4"], 16_000), 16_000)
    got = list(sound_track_segments(videos["mp4"], 16_000))
    assert [(s, e) for s, e, _ in got] == [(s, e) for s, e, _ in want] and len(got) == 7
    assert all(np.allclose(a, b, rtol=0, atol=1e-6) for (_, _, a), (_, _, b) in zip(got, want, strict=True))
    assert not list(sound_track_segments(videos["silent_film"]))  # no audio stream: no windows


def test_a_silent_sound_track_is_told_at_its_end(tmp_path):
    path = make_video(tmp_path / "hush.mp4", seconds=12, video=False, tone=None)
    got = []
    with pytest.raises(SilentTrack):
        got.extend(sound_track_segments(path, 16_000))
    assert len(got) == 2  # its windows came first: the caller drops them


def test_is_video_by_content():
    assert is_video(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41")
    assert is_video(b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ")
    assert is_video(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm\x42\x87")
    assert is_video(b"RIFF\x00\x10\x00\x00AVI LIST")
    assert not is_video(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")  # a HEIF picture
    assert not is_video(b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00M4A isom")  # a sound
    assert not is_video(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    assert not is_video(b"\x89PNG\r\n\x1a\n")
    assert not is_video(b"hello, this is a text file\n")
    assert not is_video(b"")


def test_video_config_is_checked(tmp_path):
    assert load_media_config().video == VideoLimits()  # the bundled [video] table holds the defaults
    custom = tmp_path / "media.toml"
    custom.write_text("[video]\nsample_fps = 2\nhop_s = 2.5\ndedupe_threshold = 0\n")
    loaded = load_media_config(custom).video
    assert (loaded.sample_fps, loaded.hop_s, loaded.dedupe_threshold, loaded.window_s) == (2, 2.5, 0, 10.0)
    with pytest.raises(ConfigError, match="hop_s"):
        VideoLimits(hop_s=20.0)
    with pytest.raises(ConfigError, match="max_pixels"):
        VideoLimits(max_pixels=0)
    with pytest.raises(ConfigError, match="integer"):
        VideoLimits(max_fps=2.5)


def _absurd_avi(tmp_path: Path, width: int, height: int) -> Path:
    """An MJPEG AVI whose header (avih, the stream's BITMAPINFOHEADER) and frames (each JPEG's SOF0) declare
    width x height pixels: FFmpeg keeps the header's size when its first frames do not decode at it (a
    header alone is overridden by the size of the frames it decodes)."""
    data = bytearray(make_video(tmp_path / "small.avi", seconds=2, audio=False, codec="mjpeg").read_bytes())
    struct.pack_into("<ii", data, data.find(b"strf") + 12, width, height)
    struct.pack_into("<II", data, data.find(b"avih") + 40, width, height)
    at = data.find(b"\xff\xc0")
    while at >= 0:  # SOF0: length (2), precision (1), height (2), width (2)
        struct.pack_into(">HH", data, at + 5, height, width)
        at = data.find(b"\xff\xc0", at + 2)
    path = tmp_path / f"absurd-{width}x{height}.avi"
    path.write_bytes(bytes(data))
    return path


def test_bad_inputs_one_line_each(videos, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("These are my holiday notes, not a video.\n" * 20)
    picture = tmp_path / "picture.mp4"
    Image.new("RGB", (32, 32), RED).save(picture, format="PNG")
    data = videos["mp4"].read_bytes()
    truncated = tmp_path / "truncated.mp4"  # the index (moov) is written last: cut off
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(data[:32] + bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    cases = [
        (empty, ["empty file"]),
        (text, ["not a video", "text"]),
        (picture, ["not a video"]),
        (truncated, ["truncated or corrupt"]),
        (garbage, ["truncated or corrupt"]),
        (tmp_path / "missing.mp4", ["no such file"]),
        (_absurd_avi(tmp_path, 10_000, 4000), ["10000x4000", "max_pixels"]),
        (make_video(tmp_path / "strip.mp4", seconds=1, size=(2048, 16), audio=False), ["2048x16", "128:1"]),
    ]
    for path, words in cases:
        for call in (probe, lambda p: list(sampled_frames(p)), audio_track):
            with pytest.raises(DecodeError) as exc:
                call(path)
                pytest.fail(f"{path.name}: no DecodeError")
            _one_line(exc, path, *words)


def test_truncated_with_its_index_first(tmp_path):
    """An MP4 whose index comes first ("faststart", as web videos) keeps its header when cut: its missing
    end is noticed from the header's duration."""
    path = make_video(tmp_path / "web.mp4", audio=False, container_options={"movflags": "faststart"})
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    assert probe(path).duration == pytest.approx(SECONDS, abs=0.1)
    with pytest.raises(DecodeError) as exc:
        probe(cut)
    _one_line(exc, cut, "truncated")


def test_absurd_frame_rate(tmp_path):
    path = make_video(tmp_path / "fast.avi", seconds=1, audio=False, codec="mjpeg")
    data = bytearray(path.read_bytes())
    strh = data.find(b"strh") + 8  # fccType, fccHandler, flags, priority+language, initial frames, scale, rate
    struct.pack_into("<II", data, strh + 20, 1, 1_000_000)  # dwScale 1, dwRate 1,000,000: a million fps
    struct.pack_into("<I", data, data.find(b"avih") + 8, 1)  # microseconds per frame
    path.write_bytes(bytes(data))
    with pytest.raises(DecodeError) as exc:
        probe(path)
    _one_line(exc, path, "fps", "max_fps")
