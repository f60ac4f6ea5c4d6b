"""Test-only: a real local Ray cluster of N nodes (`ray start --head` plus `ray start --address`), each
with one CPU and a small object store, started in its own process group and stopped by it (never a
machine-wide `ray stop`: other Ray users of the machine keep theirs)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
OBJECT_STORE = 300 * 1024 * 1024  # bytes per node: a 24 GB machine shared with other jobs
# A throw-away cluster on one machine: no token (Ray's token mode would need the same token file for the
# nodes, `ray status` and every driver, and one left in ~/.ray by another run would not match).
NO_TOKEN = {"RAY_AUTH_MODE": "disabled"}


def node_ip() -> str:
    """This machine's address as Ray names its nodes (not 127.0.0.1 where a route exists)."""
    from ray.util import get_node_ip_address

    return get_node_ip_address()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def node_env() -> dict[str, str]:
    """The nodes' environment: the repository importable by the workers (the test-only encoder lives
    in tests/), no usage reporting."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0", **NO_TOKEN}


@contextmanager
def local_cluster(nodes: int = 2, timeout: float = 120.0) -> Iterator[str]:
    """Start `nodes` Ray nodes on this machine; yields the head's address (ip:port); stops them all."""
    import ray

    # Ray's socket paths must stay short (108 bytes): not under pytest's long tmp_path.
    temp = Path(tempfile.mkdtemp(prefix="avray-"))
    ip, port = node_ip(), free_port()
    address = f"{ip}:{port}"
    common = ["--block", "--num-cpus", "1", "--object-store-memory", str(OBJECT_STORE), "--node-ip-address", ip]
    common += ["--disable-usage-stats"]
    head = [RAY, "start", "--head", "--port", str(port), "--temp-dir", str(temp), "--include-dashboard", "false"]
    procs: list[subprocess.Popen] = []
    saved = {k: os.environ.get(k) for k in NO_TOKEN}
    os.environ.update(NO_TOKEN)  # for this process's drivers too (ray.init reads it)
    try:
        for i in range(nodes):
            cmd = head + common if i == 0 else [RAY, "start", "--address", address, *common]
            log = open(temp / f"node{i}.log", "wb")  # noqa: SIM115 (the node writes it while it runs)
            procs.append(
                subprocess.Popen(cmd, env=node_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
            if i == 0:
                _wait_for(lambda: _answers(address), timeout, "the head node", temp)
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        try:
            _wait_for(lambda: sum(n["Alive"] for n in ray.nodes()) == nodes, timeout, f"{nodes} nodes", temp)
        finally:
            ray.shutdown()
        yield address
    finally:
        _stop(procs)
        shutil.rmtree(temp, ignore_errors=True)  # the nodes' sessions and logs
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _answers(address: str) -> bool:
    done = subprocess.run([RAY, "status", "--address", address], env=node_env(), capture_output=True, timeout=60)
    return done.returncode == 0


def _wait_for(ready, timeout: float, what: str, temp: Path) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(temp.glob("node*.log")))
            raise TimeoutError(f"Ray: {what} not up after {timeout:.0f} s\n{logs}")
        time.sleep(0.5)


def _stop(procs: list[subprocess.Popen]) -> None:
    """Each node's whole process group (raylet, object store, workers; the head's GCS): asked to stop,
    then killed. Workers first, the head last."""
    for proc in reversed(procs):
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + 5  # a throw-away cluster: a short grace, then SIGKILL
    for proc in reversed(procs):
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        _signal_group(proc, signal.SIGKILL)  # what is left of the group (a worker that ignored SIGTERM)
        proc.wait()
    # The groups' other processes (raylet, object store, workers) may outlive their `ray start` by a moment,
    # writing into the session folder: wait for them, or the folder's removal would leave it half there.
    deadline = time.monotonic() + 10
    while any(_group_alive(proc) for proc in procs) and time.monotonic() < deadline:
        time.sleep(0.1)


def _group_alive(proc: subprocess.Popen) -> bool:
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
