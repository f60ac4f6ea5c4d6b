"""Search results as moments (avsearch/search/moments.py, engine.py): hits of one file that touch or
overlap merge, at most N moments a file (the rest counted), plain files as before. Engine-level tests use a
test-only FAKE encoder whose sound vectors are magnitude spectra (phase-free, so a tone matches the segments
that hold it) and whose picture vectors are colour thumbnails; its text tower maps one caption to the tone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avsearch.errors import InputError
from avsearch.indexing.pipeline import index_folder
from avsearch.search.engine import SearchEngine
from avsearch.search.moments import clock, fragment, merge_hits
from avsearch.search.query import query
from avsearch.search.results import ResultSet
from avsearch.store.index import Index
from avsearch.store.table_schema import row_ref
from tests.media.videos import GREY, RED, make_video
from tests.search.fake_encoder import FakeEncoder, FakeLoader, FakePreparer
from tests.search.test_moments_index import write_long_recording

CAPTION = "a pure 440 hertz tone"
RATE = 16_000


def _tone(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


class SpectrumPreparer(FakePreparer):
    def from_samples(self, wave: np.ndarray) -> np.ndarray:
        return np.abs(np.fft.rfft(np.resize(wave, 510))).astype(np.float32) + 1e-3  # 256 bins, phase-free

    def from_image(self, image) -> np.ndarray:
        return np.resize(np.asarray(image.convert("RGB").resize((8, 8)), np.float32).reshape(-1), 256) + 1e-3


class MomentFake(FakeEncoder):
    def preparer(self, modality: str) -> SpectrumPreparer:
        super().preparer(modality)
        return SpectrumPreparer(modality)

    def encode_text(self, texts):
        tone = self._unit(SpectrumPreparer("audio").from_samples(_tone()))
        return np.stack([tone if t == CAPTION else super().encode_text([t])[0] for t in texts])


class MomentLoader(FakeLoader):
    def __call__(self, name: str, towers: tuple[str, ...]) -> FakeEncoder:
        space = "clip" if name.startswith("clip") else "ulip" if name.startswith("ulip") else "clap"
        return self.loaded.setdefault((name, towers), MomentFake(name, space, towers))


@pytest.fixture(scope="module")
def engine(tmp_path_factory, bridge_file) -> tuple[SearchEngine, Path]:
    root = tmp_path_factory.mktemp("moment_media")
    make_video(root / "walk.mp4")  # red square 12-18 s, tone 30-35 s
    # a film of 8 different colours, 1 s each: 8 frame rows, all alike for a query of their mean colour
    with_colours = root / "colours.mp4"
    make_video(with_colours, seconds=8, audio=False, square=None)
    write_long_recording(root / "field.wav", seconds=300.0, event=(100.0, 104.0))
    Image.new("RGB", (32, 32), (20, 200, 20)).save(root / "green.png")
    sf.write(root / "beep.wav", _tone(0.5), RATE)
    index = root.parent / "moment_index"
    loader = MomentLoader()
    index_folder(root, index, bridge_file, encoder_loader=loader)
    return SearchEngine(Index.open(index, encoder_loader=loader)), root


def _moments(result: ResultSet) -> list[tuple[str, float | None, float | None]]:
    return [(Path(h.path).name, h.start, h.end) for h in result.hits]


def test_merge_touching_hits_of_one_file_within_the_gap() -> None:
    a, b = "/m/a.mp4", "/m/b.mp4"
    pairs = [
        (0.90, row_ref(a, 12.0, 18.0)),
        (0.89, row_ref(a, 18.0, 20.0)),  # touches, close score: merged, range widened
        (0.88, row_ref(b, 0.0, 10.0)),
        (0.87, "/m/c.png"),  # a plain file passes through
        (0.86, row_ref(b, 5.0, 15.0)),  # overlaps b's moment: merged
        (0.50, row_ref(a, 0.0, 12.0)),  # touches a's moment but far below: a moment of its own
        (0.40, row_ref(a, 30.0, 31.0)),
        (0.30, row_ref(a, 40.0, 41.0)),
    ]
    got = merge_hits(pairs, k=10, track="image", per_file=2, gap=0.05)
    assert [(Path(m.path).name, m.start, m.end, m.score, m.more) for m in got] == [
        ("a.mp4", 12.0, 20.0, 0.90, 2),  # 2 more of a.mp4 not listed (per_file 2)
        ("b.mp4", 0.0, 15.0, 0.88, 0),
        ("c.png", None, None, 0.87, 0),
        ("a.mp4", 0.0, 12.0, 0.50, 0),
    ]
    assert [m.path for m in merge_hits(pairs, k=2, track="image", per_file=2, gap=0.05)] == [a, b]
    # a widened moment takes in a weaker one it now touches (bridging two hits that did not touch)
    chain = [(0.9, row_ref(a, 0.0, 1.0)), (0.89, row_ref(a, 2.0, 3.0)), (0.88, row_ref(a, 1.0, 2.0))]
    assert [(m.start, m.end) for m in merge_hits(chain, k=5, track="image", per_file=3, gap=0.05)] == [(0.0, 3.0)]
    # weak hits merging beside a strong moment never swallow it
    beside = [(1.0, row_ref(a, 10.0, 20.0)), (0.2, row_ref(a, 20.0, 30.0)), (0.19, row_ref(a, 15.0, 25.0))]
    got = merge_hits(beside, k=5, track="image", per_file=3, gap=0.05)
    assert [(m.start, m.end, m.score) for m in got] == [(10.0, 20.0, 1.0), (15.0, 30.0, 0.2)]


def test_fragments_and_clock() -> None:
    assert fragment("/m/walk.mp4", 83.0, 93.0) == "/m/walk.mp4#t=83.0,93.0"
    assert fragment("/m/a.png", None, None) == "/m/a.png"
    assert clock(83.0, 93.0) == "01:23-01:33" and clock(3723.0, 3733.5) == "1:02:03-1:02:13"


def test_picture_finds_the_square_within_one_sampling_step(engine, tmp_path) -> None:
    search, root = engine
    frame = np.full((48, 64, 3), GREY, np.uint8)
    frame[12:36, 16:48] = RED
    Image.fromarray(frame).save(tmp_path / "square.png")
    (result,) = search.search_file(tmp_path / "square.png", target="image", k=3)
    best = result.hits[0]
    assert Path(best.path).name == "walk.mp4" and best.score == pytest.approx(1.0, abs=1e-4)
    assert abs(best.start - 12.0) <= 1.0 and abs(best.end - 18.0) <= 1.0
    assert best.id != result.hits[1].id and len(best.id) == 32
    d = result.to_dict()["hits"][0]
    assert (d["start"], d["end"]) == (best.start, best.end) and json.dumps(d)


def test_text_caption_finds_the_tone_in_the_sound_track(engine) -> None:
    search, _ = engine
    (result,) = search.search_text(CAPTION, target="audio", k=3)
    walk = [h for h in result.hits if Path(h.path).name == "walk.mp4"]
    assert walk and walk[0].start <= 30.0 + 0.05 and walk[0].end >= 35.0  # a window holding the whole tone
    assert walk[0].end - walk[0].start <= 15.0  # not the whole track


def test_long_recording_finds_the_event_segment(engine, tmp_path) -> None:
    search, _ = engine
    sf.write(tmp_path / "query.wav", _tone(), RATE)
    (result,) = search.search_file(tmp_path / "query.wav", target="audio", k=10)
    field = [h for h in result.hits if Path(h.path).name == "field.wav"]
    assert field[0].start <= 100.0 and field[0].end >= 101.0  # the segment where the event starts
    assert field[0].end - field[0].start <= 15.0
    assert len(field) <= 3 and all(h.start is not None for h in field)
    beep = [h for h in result.hits if Path(h.path).name == "beep.wav"]
    assert beep and beep[0].start is None  # a short sound stays one whole-file hit


def test_one_file_does_not_flood_the_list(engine, tmp_path) -> None:
    search, _ = engine
    # the recording's 59 segments are nearly all alike (faint noise): a noise query finds many of them
    noise = (0.002 * np.random.default_rng(1).standard_normal(RATE)).astype(np.float32)
    sf.write(tmp_path / "hiss.wav", noise, RATE)
    (result,) = search.search_file(tmp_path / "hiss.wav", target="audio", k=10)
    field = [h for h in result.hits if Path(h.path).name == "field.wav"]
    assert len(field) == 3  # max_moments_per_file
    assert field[0].more > 0 and all(h.more == 0 for h in field[1:])


def test_a_piece_of_a_recording_or_a_video_as_the_query(engine) -> None:
    search, root = engine
    # the recording's 100-104 s (its tone) finds the segment holding it; its 0-10 s (faint noise) does not
    (tone,) = query(search, audio=root / "field.wav", start=100, end=104, target="audio", k=5)
    assert tone.query.endswith("field.wav#t=100,104")
    field = [h for h in tone.hits if Path(h.path).name == "field.wav"]
    assert field[0].start <= 100.0 < field[0].end and field[0].score == pytest.approx(1.0, abs=1e-3)
    (hiss,) = query(search, audio=root / "field.wav", start=0, end=10, target="audio", k=5)
    assert not any(h.start is not None and h.start <= 100.0 < h.end for h in hiss.hits[:1])
    # the video's frames over 12-18 s find its 12-18 s moment; its sound over 30-35 s the tone's windows
    (frames,) = query(search, video=root / "walk.mp4", source="frames", start=12, end=18, target="image", k=3)
    assert frames.query_modality == "image" and (frames.hits[0].start, frames.hits[0].end) == (12.0, 18.0)
    assert frames.hits[0].score == pytest.approx(1.0, abs=1e-4)
    (sound,) = query(search, video=root / "walk.mp4", source="audio", start=30, end=35, target="audio", k=3)
    walk = [h for h in sound.hits if Path(h.path).name == "walk.mp4"]
    assert walk[0].score == pytest.approx(1.0, abs=1e-3) and walk[0].start <= 30.05 and walk[0].end >= 35.0
    both = query(search, video=root / "walk.mp4", target="image", k=3)  # its frames, then its sound
    assert [r.query_modality for r in both] == ["image", "audio"]


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"image": "x.png", "start": 1.0}, "--start, --end and --from"),
        ({"audio": "field.wav", "start": 5.0, "end": 2.0}, "must come after"),
        ({"audio": "field.wav", "start": 400.0}, "holds no sound"),
        ({"audio": "beep.wav", "source": "frames", "start": 0.0}, "has no frames"),
    ],
)
def test_bad_pieces_are_one_line(engine, given, words) -> None:
    search, root = engine
    given = {k: root / v if isinstance(v, str) and k in ("image", "audio") else v for k, v in given.items()}
    with pytest.raises(InputError) as exc:
        query(search, target="audio", **given)
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_a_video_file_as_the_query_gives_its_frames_and_its_sound(engine) -> None:
    search, root = engine
    frames, sound = search.search_file(root / "walk.mp4", target="image", k=3)  # as the server's upload does
    assert (frames.query_modality, sound.query_modality) == ("image", "audio")
    walk = str(root / "walk.mp4")
    assert walk in {h.path for h in frames.hits} and walk in {h.path for h in sound.hits}  # found, both ways
    assert frames.query == sound.query == walk


def test_the_results_table_shows_a_moment_with_its_range_and_the_rest_counted() -> None:
    from avsearch.cli.query import _where
    from avsearch.search.results import Hit

    assert _where(Hit(1, "/m/walk.mp4", "image", 0.9, start=83.0, end=93.0)) == "/m/walk.mp4  01:23-01:33"
    assert _where(Hit(1, "/m/walk.mp4", "audio", 0.9, start=0.0, end=10.0, more=4)) == (
        "/m/walk.mp4  00:00-00:10  (+4 more)"
    )
    assert _where(Hit(1, "/m/a.png", "image", 0.9)) == "/m/a.png"
