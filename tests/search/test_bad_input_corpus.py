"""A hostile folder indexed end to end: every supported format, every kind of bad media (tests/media/
corpus.py), plain non-media, and what only a folder can hold (FIFOs, sockets, symlink loops and broken
links, unreadable files and folders, hostile and non-UTF-8 names, hard links and copies, silent/NaN/
too-short audio, NaN/2-point/coincident clouds, a 100-megapixel photo). Each file is indexed or listed
with a reason, never a traceback, no row lost or doubled, and a re-run changes nothing. Test-only FAKE
encoder (real decoders), real LanceDB tables and FAISS indexes."""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.indexing.pipeline import index_folder
from avsearch.media.walk import walk_folder
from avsearch.store.index import Index
from tests.media.corpus import BAD, GOOD, PLAIN, write_all
from tests.search.conftest import make_3d_bridge
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_image


@contextlib.contextmanager
def permission_denied(files: set[str], folders: set[str]) -> Iterator[None]:
    """Opening one of `files` or listing one of `folders` raises PermissionError (EACCES) in this process,
    as for a user without read permission: chmod 0 alone does not stop root, who runs CI and this machine.
    Covers Python's opens (builtins, io, os: PIL, numpy, pathlib, the hasher) and os.scandir (the walk)."""
    real = {"open": builtins.open, "io_open": io.open, "os_open": os.open, "scandir": os.scandir}

    def denied(path: object, names: set[str]) -> bool:
        return isinstance(path, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(path)) in names

    def refuse(path: object) -> PermissionError:
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))  # type: ignore[arg-type]

    def guarded(name: str, names: set[str]):  # noqa: ANN202
        def call(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if denied(path, names):
                raise refuse(path)
            return real[name](path, *args, **kwargs)

        return call

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtins, "open", guarded("open", files))
        mp.setattr(io, "open", guarded("io_open", files))
        mp.setattr(os, "open", guarded("os_open", files))
        mp.setattr(os, "scandir", guarded("scandir", folders))
        yield


def _wav(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    sf.write(os.fsencode(path), samples.astype(np.float32), rate, subtype="FLOAT", format="WAV")


def _npy(path: Path, points: np.ndarray) -> None:
    np.save(path, points.astype(np.float32))


def _folder_only_kinds(root: Path) -> dict[str, str]:
    """Kinds only a folder can hold; returns name -> expected verdict ("indexed", "failed", "any")."""
    extra = root / "extra"
    extra.mkdir()
    good = write_image(extra / "original.png", seed=5)
    os.link(good, extra / "hard link.png")
    (extra / "copy.png").write_bytes(good.read_bytes())
    os.mkfifo(extra / "pipe.wav")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(extra / "socket.png"))
    sock.close()
    (extra / "loop").symlink_to(root, target_is_directory=True)
    (extra / "dangling.png").symlink_to(extra / "nowhere.png")
    (extra / "link to original.png").symlink_to(good)
    write_image(extra / "locked.png", seed=6)  # unreadable, and "closed" cannot be listed: see `hostile`
    (extra / "closed").mkdir()
    write_image(extra / "closed" / "inside.png", seed=7)
    t = np.arange(16000) / 16000
    _wav(extra / "silent.wav", np.zeros(16000))
    _wav(extra / "nan.wav", np.where(t > 0.5, np.nan, np.sin(2 * np.pi * 300 * t)))
    _wav(extra / "blip.wav", np.sin(2 * np.pi * 300 * t[:160]))  # 0.01 s
    rng = np.random.default_rng(0)
    _npy(extra / "nan cloud.npy", np.where(rng.random((500, 1)) < 0.5, np.nan, rng.normal(size=(500, 3))))
    _npy(extra / "two points.npy", np.array([[0, 0, 0], [1, 1, 1]]))
    _npy(extra / "same point.npy", np.ones((500, 3)))
    Image.new("RGB", (10000, 10000), (40, 90, 160)).save(extra / "panorama 100MP.jpg", quality=70)
    for i, name in enumerate(['it\'s "quoted".png', "' OR '1'='1.png", "-rf *.png", "new\nline.png"]):
        write_image(extra / name, seed=20 + i)
    raw = os.fsdecode(os.fsencode(str(extra)) + b"/\xff\xfe bytes.png")
    write_image(Path(raw), seed=30)
    verdicts = {
        "original.png": "indexed",
        "hard link.png": "indexed",
        "copy.png": "indexed",
        "link to original.png": "indexed",
        "pipe.wav": "failed",
        "socket.png": "failed",
        "dangling.png": "failed",
        "locked.png": "failed",
        "closed": "failed",
        "closed/inside.png": "absent",
        "silent.wav": "failed",
        "nan.wav": "failed",
        "blip.wav": "any",
        "nan cloud.npy": "any",  # NaN rows dropped; enough valid points remain
        "two points.npy": "failed",
        "same point.npy": "failed",
        "panorama 100MP.jpg": "indexed",
        'it\'s "quoted".png': "indexed",
        "' OR '1'='1.png": "indexed",
        "-rf *.png": "indexed",
        "new\nline.png": "indexed",
        os.fsdecode(b"\xff\xfe bytes.png"): "indexed",
    }
    return {str(extra / name): verdict for name, verdict in verdicts.items()}


@pytest.fixture()
def hostile(tmp_path: Path):
    root = tmp_path / "media"
    good = {str(p) for p in write_all(root / "good", GOOD).values()}
    bad = {str(p) for p in write_all(root / "bad", BAD).values()}
    plain = {str(p) for p in write_all(root / "other", PLAIN).values()}
    extra = _folder_only_kinds(root)
    locked, closed = str(root / "extra" / "locked.png"), str(root / "extra" / "closed")
    with permission_denied({locked}, {closed}):
        yield root, good, bad, plain, extra


def test_every_file_is_indexed_or_listed_and_a_rerun_changes_nothing(hostile, tmp_path, bridge_file) -> None:
    root, good, bad, plain, extra = hostile
    assert len(GOOD) + len(BAD) + len(PLAIN) + len(extra) >= 60
    bridges = [bridge_file, make_3d_bridge(tmp_path / "3d.safetensors")]
    loader = FakeLoader()
    first = index_folder(root, tmp_path / "index", bridges, encoder_loader=loader)

    index = Index.open(tmp_path / "index")
    rows = {m: index.tables.bookkeeping(m) for m in index.tables.modalities()}
    indexed = [p for table in rows.values() for p in table]
    assert len(indexed) == len(set(indexed)) == sum(index.tables.count(m) for m in rows)  # no doubled row
    failed = dict(first.failed)
    assert len(failed) == len(first.failed) and all(why.strip() and "\n" not in why for why in failed.values())
    scanned, _ = walk_folder(root)
    listed = set(indexed) | set(failed)
    ignored = {f.path for f in scanned} - listed
    assert ignored == plain and first.ignored == len(plain)  # only plainly-non-media files go unexplained

    assert good <= set(indexed)
    assert bad <= set(failed), sorted(bad - set(failed))
    for path, verdict in extra.items():
        where = "indexed" if path in indexed else "failed" if path in failed else "absent"
        assert verdict in ("any", where), (path, where, failed.get(path))
    assert failed[str(root / "extra" / "locked.png")] == "cannot read: Permission denied"
    assert failed[str(root / "extra" / "closed")] == "cannot list folder: Permission denied"

    second = index_folder(root, tmp_path / "index", encoder_loader=loader)
    assert second.added == second.removed == second.touched == 0 and second.unchanged == len(indexed)
    assert dict(second.failed) == failed and second.failed_before == len(
        [p for p in failed if p in {f.path for f in scanned}]
    )
    again = Index.open(tmp_path / "index")
    assert {m: again.tables.bookkeeping(m) for m in rows} == rows


def test_the_cli_reports_the_hostile_folder_without_a_traceback(hostile, tmp_path, bridge_file, monkeypatch) -> None:
    root, good, bad, plain, extra = hostile
    monkeypatch.setattr("avsearch.store.index.default_loader", lambda *a: FakeLoader())
    args = ["index", str(root), "--index-dir", str(tmp_path / "index"), "--bridge", str(bridge_file)]
    args += ["--bridge", str(make_3d_bridge(tmp_path / "3d.safetensors")), "-q", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
    assert isinstance(result.exception, SystemExit)  # the exit code, not an exception that escaped
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert len(report["failed"]) >= len(bad) and all(f["reason"] for f in report["failed"])
    shown = {f["path"] for f in report["failed"]}
    assert (
        str(root / "extra" / "pipe.wav") in shown
        and str(root / "bad" / next(iter(sorted(Path(p).name for p in bad)))) in shown
    )


def test_real_files_found_on_this_machine(tmp_path, bridge_file) -> None:
    """Pictures, sounds and arrays that ship inside the installed packages (icons, test data, odd
    encodings nobody made for this test): each indexed or listed, and a re-run changes nothing."""
    import sys

    found: list[Path] = []
    for ext in ("png", "jpg", "gif", "wav", "npy"):
        files = sorted(Path(sys.prefix).rglob(f"*.{ext}"))
        found += files[:: max(1, len(files) // 25)][:25]  # spread over the packages, 25 per kind at most
    assert len(found) >= 30
    root = tmp_path / "real"
    for i, src in enumerate(found):
        dst = root / src.parent.name / f"{i:03d}_{src.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    bridges = [bridge_file, make_3d_bridge(tmp_path / "3d.safetensors")]
    loader = FakeLoader()
    first = index_folder(root, tmp_path / "index", bridges, encoder_loader=loader)
    assert first.added + len(first.failed) + first.ignored == len(found)
    assert first.added >= len(found) // 3 and all(why for _, why in first.failed)  # (many .npy are not points)
    second = index_folder(root, tmp_path / "index", encoder_loader=loader)
    assert second.added == second.removed == 0 and second.unchanged == first.added


def test_files_changing_during_the_run(tmp_path, bridge_file) -> None:
    """A file rewritten, one deleted and one added while `index` runs: the run finishes without a
    traceback or a row for a file that is gone, and the next run picks the changes up; then nothing."""
    media = tmp_path / "media"
    pictures = [write_image(media / f"p{i:02d}.png", seed=i) for i in range(12)]

    class ChangingLoader(FakeLoader):  # test-only: changes the folder when the first batch is encoded
        def __init__(self) -> None:
            super().__init__()
            self.changed = False  # this run's own (a class attribute stayed True for a second run)

        def __call__(self, name, towers):
            encoder = super().__call__(name, towers)
            encode = encoder.encode_prepared

            def encode_and_change(modality, items):
                if not self.changed:
                    self.changed = True
                    write_image(pictures[10], seed=99)  # rewritten after the scan saw it
                    pictures[11].unlink()  # gone after the scan listed it
                    write_image(media / "new.png", seed=77)  # appears after the scan
                return encode(modality, items)

            encoder.encode_prepared = encode_and_change
            return encoder

    loader = ChangingLoader()
    first = index_folder(media, tmp_path / "index", [bridge_file], encoder_loader=loader, batch_size=2)
    assert loader.changed and [p for p, _ in first.failed] == [str(pictures[11])]  # vanished mid-run
    rows = Index.open(tmp_path / "index").tables.bookkeeping("image")
    assert str(pictures[11]) not in rows and str(media / "new.png") not in rows and len(rows) == 11
    second = index_folder(media, tmp_path / "index", encoder_loader=FakeLoader())
    assert second.added == 2 and second.failed == []  # the rewritten file and the new one
    third = index_folder(media, tmp_path / "index", encoder_loader=FakeLoader())
    assert third.added == third.removed == third.touched == 0 and third.unchanged == 12
