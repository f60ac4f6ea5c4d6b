"""Indexes on object storage, against a real S3 server (SeaweedFS on 127.0.0.1, tests/store/s3_server.py).

Index, query, info, re-index after changes, kill -9 mid-ingest then resume, the server's live reload, the
FAISS download cache, the writer lease and the one-line errors. The encoder is the test-only FAKE one
(tests/search/fake_encoder.py), so no model weights are needed; the bridge is the real architecture with
random weights.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from avsearch.cli.app import app as cli_app
from avsearch.errors import ConfigError, InputError, StorageError
from avsearch.indexing.pipeline import index_folder
from avsearch.search.engine import SearchEngine
from avsearch.serve.app import create_app
from avsearch.settings import load_settings
from avsearch.store import locks
from avsearch.store.ann_files import ANN_DIR, cache_folder, load_ann, read_ann_meta
from avsearch.store.index import Index
from avsearch.store.location import Location, parse_storage_options
from avsearch.store.manifest import load_manifest
from avsearch.store.table_schema import NATIVE, FileRecord, path_key
from avsearch.store.tables import MediaStore
from tests.search.conftest import make_bridge
from tests.search.fake_encoder import FakeLoader
from tests.search.kill_harness import snapshot
from tests.search.media_factory import write_audio, write_image
from tests.store.s3_server import CutProxy, S3Server, s3_server  # noqa: F401 (the session fixture)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bridge(tmp_path_factory.mktemp("bridge") / "av.safetensors")


def fresh(server: S3Server, **extra: str) -> Location:
    """A new, empty index location in the test bucket."""
    return Location(f"s3://{server.bucket}/idx-{uuid.uuid4().hex[:8]}", {**server.options(), **extra})


def media(root: Path, images: int = 6, sounds: int = 2) -> list[Path]:
    made = [write_image(root / f"img_{i:02d}.png", seed=i) for i in range(images)]
    return made + [write_audio(root / "sounds" / f"s_{i}.wav", seed=100 + i) for i in range(sounds)]


def top_image(index: Index, picture: Path, loader: FakeLoader) -> str:
    [result] = SearchEngine(index).search_file(picture, "image", "image", k=1)
    return result.hits[0].path


def test_index_query_info_and_reindex_on_s3(s3_server, bridge, tmp_path) -> None:  # noqa: F811
    root = tmp_path / "media"
    files = media(root)
    where = fresh(s3_server)
    loader = FakeLoader()
    first = index_folder(root, where, bridge, encoder_loader=loader, batch_size=4)
    assert first.added == 8 and first.counts == {"image": 6, "audio": 2} and first.index_dir == where.uri
    names = {n for n, _ in where.list(ANN_DIR)}
    assert "manifest.json" in {n for n, _ in where.list("")} and f"image.{NATIVE}.json" in names
    index = Index.open(where, encoder_loader=loader)
    assert index.path == where.uri and index.local_dir is None
    assert top_image(index, files[3], loader) == str(files[3])
    assert index.ann(f"image.{NATIVE}", use_gpu=False).table_version == index.tables.version("image")

    # the same folder indexed locally gives the same rows and vectors
    index_folder(root, tmp_path / "local", bridge, encoder_loader=FakeLoader(), batch_size=4)
    assert snapshot(where) == snapshot(tmp_path / "local")

    # add, modify, delete, then re-index: the rows follow the folder
    added = write_image(root / "img_new.png", seed=77)
    write_image(files[1], seed=555)
    files[2].unlink()
    second = index_folder(root, where, encoder_loader=loader)
    assert (second.added, second.removed, second.counts) == (2, 1, {"image": 6, "audio": 2})
    again = Index.open(where, encoder_loader=loader)
    assert set(again.tables.bookkeeping("image")) == {str(p) for p in root.glob("*.png")}
    assert top_image(again, added, loader) == str(added) and top_image(again, files[1], loader) == str(files[1])
    index_folder(root, tmp_path / "local", encoder_loader=FakeLoader())
    assert snapshot(where) == snapshot(tmp_path / "local")
    rebuilt = index_folder(root, where, encoder_loader=loader, rebuild=True)  # drops the tables on the store
    index_folder(root, tmp_path / "fresh", bridge, encoder_loader=FakeLoader())  # the same batches, locally
    assert rebuilt.added == 8 and snapshot(where) == snapshot(tmp_path / "fresh")


def test_cli_index_query_info_with_storage_options(s3_server, bridge, tmp_path, monkeypatch) -> None:  # noqa: F811
    root = tmp_path / "media"
    files = media(root, images=4, sounds=0)
    where = fresh(s3_server)
    index_folder(root, where, bridge, encoder_loader=FakeLoader())  # the CLI's index loads real models
    opts = [a for k, v in s3_server.options().items() for a in ("--storage-option", f"{k}={v}")]
    runner = CliRunner()
    info = runner.invoke(cli_app, ["info", "--index-dir", where.uri, *opts])
    assert info.exit_code == 0, info.output
    assert f"index      {where.uri} (" in info.output and "image" in info.output
    query = ["query", "--id", str(files[0]), "--target", "image", "--paths-only", "--index-dir", where.uri]
    found = runner.invoke(cli_app, [*query, *opts])
    assert found.exit_code == 0, found.output
    assert set(found.output.split()) == {str(p) for p in files[1:]}
    # the same from the environment alone (what LanceDB and pyarrow both read), URI in AVSEARCH_INDEX_DIR
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AVSEARCH_INDEX_DIR", where.uri)
    assert load_settings().index_dir == where.uri  # not folded into a Path
    by_env = runner.invoke(cli_app, ["query", "--id", str(files[0]), "--target", "image", "--paths-only"])
    assert by_env.exit_code == 0 and set(by_env.output.split()) == {str(p) for p in files[1:]}, by_env.output


def test_ann_files_are_downloaded_once_per_build(s3_server, bridge, tmp_path, monkeypatch) -> None:  # noqa: F811
    root = tmp_path / "media"
    files = media(root, images=5, sounds=0)
    where = fresh(s3_server)
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "writer-cache"))
    index_folder(root, where, bridge, encoder_loader=FakeLoader())
    fetched: list[str] = []
    real = Location.download

    def counting(self: Location, rel: str, dest: Path) -> None:
        fetched.append(rel)
        real(self, rel, dest)

    monkeypatch.setattr(Location, "download", counting)
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "reader-cache"))  # a reader on another machine
    loader = FakeLoader()
    assert top_image(Index.open(where, encoder_loader=loader), files[0], loader) == str(files[0])
    assert fetched and all(r.startswith(f"{ANN_DIR}/image.") for r in fetched)
    assert cache_folder(where).is_relative_to(tmp_path / "reader-cache")
    before = len(fetched)
    assert top_image(Index.open(where, encoder_loader=loader), files[1], loader) == str(files[1])
    assert len(fetched) == before  # the second open reads the cached copy: nothing fetched

    # a new build (another machine re-indexed): fetched anew, and it holds the new file
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "writer-cache"))
    added = write_image(root / "img_new.png", seed=99)
    index_folder(root, where, encoder_loader=FakeLoader())
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "reader-cache"))
    index = Index.open(where, encoder_loader=loader)
    ann = index.ann(f"image.{NATIVE}", use_gpu=False)
    assert len(fetched) > before and str(added) in ann.paths and ann.index.ntotal == 6
    assert top_image(index, added, loader) == str(added)


def test_an_upload_cut_short_leaves_the_previous_build(s3_server, bridge, tmp_path, monkeypatch) -> None:  # noqa: F811
    root = tmp_path / "media"
    files = media(root, images=4, sounds=0)
    where = fresh(s3_server)
    index_folder(root, where, bridge, encoder_loader=FakeLoader())
    name = f"image.{NATIVE}"
    before = read_ann_meta(where, name)
    real = Location.upload

    def dies_on_faiss(self: Location, src: Path, rel: str) -> None:
        if rel.endswith(".faiss"):
            raise RuntimeError("the run died during this upload")
        real(self, src, rel)

    monkeypatch.setattr(Location, "upload", dies_on_faiss)
    added = write_image(root / "img_new.png", seed=31)
    with pytest.raises(RuntimeError, match="died"):
        index_folder(root, where, encoder_loader=FakeLoader())
    monkeypatch.setattr(Location, "upload", real)
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "reader-cache"))  # nothing cached: read from the store
    loader = FakeLoader()
    index = Index.open(where, encoder_loader=loader)
    assert read_ann_meta(where, name)["build"] == before["build"]  # the JSON still names the complete build
    ann = index.ann(name, use_gpu=False)
    assert ann is not None and sorted(ann.paths) == sorted(map(str, files))
    assert top_image(index, added, loader) == str(added)  # rows added since: searched beside the old build


CHILD = r"""
import sys, time
from tests.search import fake_encoder
real = fake_encoder.FakeEncoder.encode_prepared
def slow(self, modality, items):
    time.sleep(float(sys.argv[4]) * len(items))  # room for the parent to kill between commits
    return real(self, modality, items)
fake_encoder.FakeEncoder.encode_prepared = slow
from avsearch.indexing.pipeline import index_folder
index_folder(sys.argv[1], sys.argv[2], sys.argv[3], encoder_loader=fake_encoder.FakeLoader(), batch_size=1)
"""


@pytest.mark.slow
def test_kill_9_mid_ingest_on_s3_then_resume(s3_server, bridge, tmp_path) -> None:  # noqa: F811
    root = tmp_path / "media"
    media(root, images=10, sounds=0)
    reference = fresh(s3_server)
    index_folder(root, reference, bridge, encoder_loader=FakeLoader(), batch_size=1)
    where = fresh(s3_server)
    env = {**os.environ, **s3_server.env(), "OMP_NUM_THREADS": "1"}  # credentials from the environment

    def child(delay: str) -> subprocess.Popen:
        cmd = [sys.executable, "-c", CHILD, str(root), where.uri, str(bridge), delay]
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    proc = child("0.3")
    rows, deadline = 0, time.monotonic() + 120
    while rows < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            rows = Index.open(where).tables.count("image")
        except Exception:  # not described or no table yet
            rows = 0
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # still running: killed mid-ingest
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted = Index.open(where)
    assert 3 <= interrupted.tables.count("image") < 10
    assert interrupted.describe().modalities  # the interrupted index answers
    assert where.read_bytes(locks.LOCK_NAME) is not None  # the killed run's lease is still there...
    resumed = child("0")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-2000:]  # ...and did not block the resume
    assert where.read_bytes(locks.LOCK_NAME) is None
    assert snapshot(where) == snapshot(reference)


def test_serve_over_s3_picks_up_a_new_commit(s3_server, bridge, tmp_path, monkeypatch) -> None:  # noqa: F811
    root = tmp_path / "media"
    files = media(root, images=4, sounds=1)
    where = fresh(s3_server)
    loader = FakeLoader()
    index_folder(root, where, bridge, encoder_loader=loader)
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "server-cache"))
    client = TestClient(create_app(where, encoder_loader=loader, reload_interval=0))
    info = client.get("/api/info")
    assert info.status_code == 200 and info.json()["index_dir"] == where.uri
    similar = client.get(f"/api/items/{path_key(str(files[0]))}/similar", params={"target": "image", "k": 10})
    assert similar.status_code == 200 and len(similar.json()["results"][0]["hits"]) == 3
    thumb = client.get(f"/api/items/{path_key(str(files[0]))}/thumbnail")
    assert thumb.status_code == 200 and list((tmp_path / "server-cache").rglob("*.jpg"))  # cached locally...
    assert not [n for n, _ in where.list("cache")]  # ...never on the store

    added = write_image(root / "img_new.png", seed=42)
    index_folder(root, where, encoder_loader=loader)
    again = client.get(f"/api/items/{path_key(str(files[0]))}/similar", params={"target": "image", "k": 10})
    assert client.app.state.live.reopened >= 1
    assert str(added) in [h["path"] for h in again.json()["results"][0]["hits"]]


def test_one_writer_and_one_line_errors(s3_server, bridge, tmp_path) -> None:  # noqa: F811
    root = tmp_path / "media"
    media(root, images=2, sounds=0)
    where = fresh(s3_server)
    index_folder(root, where, bridge, encoder_loader=FakeLoader())
    with Index.update(where, encoder_loader=FakeLoader()):
        with pytest.raises(InputError) as busy:
            index_folder(root, where, encoder_loader=FakeLoader())
        assert str(busy.value).startswith(f"{where.uri}: another `avsearch index` is writing this index (")
        assert "\n" not in str(busy.value)
    index_folder(root, where, encoder_loader=FakeLoader())  # released at the end of the block

    wrong = Location(where.uri, {**s3_server.options(), "aws_secret_access_key": "wrong"})
    with pytest.raises(ConfigError, match=rf"^{where.uri}: .*access denied"):
        Index.open(wrong)
    with pytest.raises(InputError, match=r"^s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist"):
        Index.open(Location("s3://no-such-bucket/x", s3_server.options()))
    with pytest.raises(InputError, match=r"no index here"):
        Index.open(fresh(s3_server))
    dead = Location(where.uri, {**s3_server.options(), "aws_endpoint": "http://127.0.0.1:9"})
    with pytest.raises(StorageError, match=rf"^{where.uri}: .*does not answer"):  # an outage: 503, not bad input
        Index.open(dead)
    with pytest.raises(StorageError, match=rf"^{where.uri}: cannot read ann/image.native.json: .*does not answer"):
        load_ann(dead, "image.native")  # a FAISS file, read through the Location
    dead_quick = Location(where.uri, {**dead.options, "client_max_retries": "0", "client_retry_timeout": "2"})
    with pytest.raises(StorageError, match=rf"^{where.uri}: the tables cannot be read from the store \("):
        MediaStore(dead_quick)  # a store that stopped answering after the check: no --rebuild advice
    result = CliRunner().invoke(
        cli_app, ["info", "--index-dir", "s3://no-such-bucket/x", *_cli_options(s3_server.options())]
    )
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "avsearch: error: s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist (create it first)"
    ]
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_storage_options(["aws_region"])


def test_a_store_that_stops_answering_mid_run_is_an_outage(s3_server) -> None:  # noqa: F811
    """The store goes away behind connections the tables already hold: every table call that reaches it says
    StorageError in one line (503 in the server; try again later), never a traceback or a damaged index."""
    proxy = CutProxy(s3_server)
    quick = {"aws_endpoint": proxy.endpoint, "client_max_retries": "0", "client_retry_timeout": "2"}
    where = fresh(s3_server, **quick)
    store = MediaStore(where)
    store.ensure_table("image", 4, {"proj_av": 3})
    records = [FileRecord(f"/m/{i}.png", 1, 1, "h", "enc", "br") for i in range(3)]
    vectors = {NATIVE: np.ones((3, 4)), "proj_av": np.ones((3, 3))}
    store.upsert("image", records, vectors)
    assert store.modalities() == ["image"] and store.key_index_rows("image") is None
    proxy.cut()
    calls = {
        "count": lambda: store.count("image"),  # reads (store/table_reads.py)
        "vectors": lambda: store.vectors("image", NATIVE),
        "modalities": store.modalities,
        "ensure_table": lambda: store.ensure_table("image", 4, {"proj_av": 3}),
        "key_index_rows": lambda: store.key_index_rows("image"),
        "upsert": lambda: store.upsert("image", records, vectors),
        "delete": lambda: store.delete("image", ["/m/1.png"]),
        "manifest": lambda: load_manifest(where),
    }
    for name, call in calls.items():
        with pytest.raises(StorageError, match=rf"^{where.uri}: ") as raised:
            call()
        message = str(raised.value)
        assert "\n" not in message and "rebuild" not in message, name


def _cli_options(options: dict[str, str]) -> list[str]:
    return [a for k, v in options.items() for a in ("--storage-option", f"{k}={v}")]


def test_stale_lease_rule() -> None:
    import socket

    now = time.time()
    mine = {"host": socket.gethostname(), "pid": os.getpid(), "renewed": now}
    assert not locks.lease_is_stale(mine, now)  # a live writer here
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert locks.lease_is_stale({**mine, "pid": int(dead.stdout)}, now)  # killed here: stale at once
    elsewhere = {"host": "another-machine", "pid": 1, "renewed": now - 5}
    assert not locks.lease_is_stale(elsewhere, now)
    assert locks.lease_is_stale({**elsewhere, "renewed": now - locks.LEASE_TTL - 1}, now)  # not renewed: stale
    assert locks.lease_is_stale({}, now)  # a damaged lease holds nobody


def test_locations_and_options(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1234")
    monkeypatch.delenv("AWS_ALLOW_HTTP", raising=False)
    where = Location("s3://bucket/a/b/", parse_storage_options(["access_key_id=given", "Region=eu-west-1"]))
    assert (where.uri, where.bucket, where.prefix) == ("s3://bucket/a/b", "bucket", "a/b")
    assert where.options["aws_access_key_id"] == "given" and where.options["aws_region"] == "eu-west-1"
    assert where.options["allow_http"] == "true"  # an http:// endpoint is asked for plainly
    assert "given" not in repr(where)  # options (secrets) are never shown
    assert Location(f"file://{tmp_path}").local_path == tmp_path and Location(tmp_path).local_path == tmp_path
    with pytest.raises(InputError, match="unknown storage scheme 'http'"):
        Location("http://example.com/idx")
    with pytest.raises(InputError, match="no bucket named"):
        Location("s3:///idx")


def test_a_writer_that_lost_the_lease_race_stops(s3_server, monkeypatch) -> None:  # noqa: F811
    import json
    import types

    where = fresh(s3_server)

    def rival_writes_meanwhile(seconds: float) -> None:  # another machine's run wrote its lease after ours
        rival = {"host": "other-machine", "pid": 1, "token": "rival", "renewed": time.time()}
        where.write_bytes(locks.LOCK_NAME, json.dumps(rival).encode())

    monkeypatch.setattr(
        locks, "time", types.SimpleNamespace(time=time.time, monotonic=time.monotonic, sleep=rival_writes_meanwhile)
    )
    refused = pytest.raises(InputError, match=r"writing this index \(other-machine pid 1, lease renewed")
    with refused, locks.writer_lock(where):
        pytest.fail("both writers went on")
    assert json.loads(where.read_bytes(locks.LOCK_NAME))["token"] == "rival"  # the winner's lease stays


def test_the_lease_is_renewed_while_the_run_holds_it(s3_server, monkeypatch) -> None:  # noqa: F811
    import json

    monkeypatch.setattr(locks, "LEASE_TTL", 0.8)  # renewed every 0.2 s
    where = fresh(s3_server)
    with locks.writer_lock(where) as lock:
        first = json.loads(where.read_bytes(locks.LOCK_NAME))
        time.sleep(1.2)  # longer than the lease lives without renewal
        now = json.loads(where.read_bytes(locks.LOCK_NAME))
        assert now["token"] == first["token"] and now["renewed"] - first["renewed"] >= 0.6
        assert not locks.lease_is_stale(now)
        refused = pytest.raises(InputError, match="another `avsearch index` is writing this index")
        with refused, locks.writer_lock(where):  # a second writer finds a live lease, not a stale one
            pytest.fail("a renewed lease was taken over")
        lock.check()  # still held: the run goes on
    assert where.read_bytes(locks.LOCK_NAME) is None  # released at the end


def test_a_run_whose_lease_was_taken_over_stops(s3_server, bridge, tmp_path, monkeypatch) -> None:  # noqa: F811
    import json

    monkeypatch.setattr(locks, "LEASE_TTL", 0.4)  # renewed (and checked) every 0.1 s
    root = tmp_path / "media"
    media(root, images=5, sounds=0)
    where = fresh(s3_server)
    rival = {"host": "other-machine", "pid": 1, "token": "rival", "renewed": time.time()}
    real = MediaStore.upsert
    upserts: list[int] = []

    def takeover_after_the_first_batch(self: MediaStore, modality: str, records, vectors, **options) -> None:
        real(self, modality, records, vectors, **options)
        upserts.append(len(records))
        if len(upserts) == 1:  # another machine found our lease stale and took it over: it renews its own
            for _ in range(12):  # (a renewal of ours that read just before a write of the rival's overwrites
                where.write_bytes(locks.LOCK_NAME, json.dumps(rival).encode())  # it once; the next one sees it)
                time.sleep(0.05)

    monkeypatch.setattr(MediaStore, "upsert", takeover_after_the_first_batch)
    # (SeaweedFS may answer "no such object" to a read racing two writes of it)
    now = r"(other-machine pid 1 holds it now|it is gone)"
    stopped = rf"this run stopped: the writer lease was taken over by another run \({now}\)"
    with pytest.raises(InputError, match=rf"^{where.uri}: {stopped}$"):
        index_folder(root, where, bridge, encoder_loader=FakeLoader(), batch_size=1)
    assert upserts == [1]  # no batch was written after the loss was seen
    monkeypatch.setattr(MediaStore, "upsert", real)
    assert Index.open(where).tables.count("image") == 1
    assert json.loads(where.read_bytes(locks.LOCK_NAME))["token"] == "rival"  # the new writer's lease stays


def test_a_lease_that_cannot_be_renewed_is_lost(s3_server, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(locks, "LEASE_TTL", 0.6)  # renewal tried every 0.15 s
    monkeypatch.setattr(locks, "SETTLE", 0.05)
    where = fresh(s3_server)
    real = Location.write_bytes

    def store_refuses_the_lease(self: Location, rel: str, data: bytes) -> None:
        if rel == locks.LOCK_NAME:
            raise OSError("the store does not answer")
        real(self, rel, data)

    with locks.writer_lock(where) as lock:
        monkeypatch.setattr(Location, "write_bytes", store_refuses_the_lease)
        time.sleep(0.2)  # renewals failing for less than LEASE_TTL: the lease is still ours
        lock.check()
        time.sleep(1.0)
        with pytest.raises(InputError, match=r"could not be renewed for 0.6 s \(the store does not answer\)"):
            lock.check()
