"""Start and stop a real Milvus server (the PyPI package ``milvus`` 2.3.5) on loopback.

Used by the tests (tests/test_milvus.py) and by benchmarks/milvus_bench.py --server. The package
unpacks the standalone server binary with embedded etcd; `milvus_server` runs it, waits until it
accepts clients, and stops it by pid with SIGINT, checking no process is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


class MilvusServerError(RuntimeError):
    """The server could not start or stop cleanly (the message holds the reason and its log)."""


SERVER_HOST, SERVER_PORT = "127.0.0.1", 19530
#: The embedded etcd's peer port: fixed in milvus 2.3.5, so one such server per machine at a time.
ETCD_PEER_PORT = 2380
#: Strong reads wait for the next time tick (200 ms by default); a faster tick keeps the tests quick.
SERVER_EXTRA = ("--extra-config", "proxy.timeTickInterval=50")
SERVER_START_TIMEOUT = 90.0  # a cold start unpacks ~250 MB of binaries first (~20 s on a busy machine)
SERVER_STOP_TIMEOUT = 20.0
#: One real server per machine at a time: its etcd peer port (2380) and pid file are fixed.
SERVER_LOCK = Path(os.environ.get("TMPDIR", "/tmp")) / "qa-milvus-server.lock"
#: The server's unpacked binaries are cached here between runs (they never change for a pinned version).
BIN_CACHE = Path(os.environ.get("QA_MILVUS_BIN_CACHE", Path.home() / ".cache" / "qa" / "milvus-server-bin"))


def _bindable(port: int) -> bool:
    """Whether milvus-server's own check (a plain bind, no SO_REUSEADDR) will accept ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((SERVER_HOST, port))
        except OSError:
            return False
    return True


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((SERVER_HOST, port)) == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((SERVER_HOST, 0))
        return int(sock.getsockname()[1])


def _accepts_clients(url: str) -> bool:
    from pymilvus import MilvusClient

    from qa.milvus import parse_target

    try:
        client = MilvusClient(uri=parse_target(url + "/probe").uri, timeout=2)
        client.list_collections()
        client.close()
    except Exception:
        return False
    return True


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _log_tail(data: Path, lines: int = 15) -> str:
    out = []
    for name in ("milvus-stderr.log", "milvus-stdout.log"):
        path = data / "logs" / name
        if path.exists():
            text = path.read_text(errors="replace").splitlines()
            interesting = [line for line in text if "ERROR" in line or "panic" in line or "FATAL" in line]
            out.append(f"--- {path} ---\n" + "\n".join((interesting or text)[-lines:]))
    return "\n".join(out)


def _cached_binaries() -> Path:
    """The server binaries, unpacked once per machine (the package unpacks into every new data dir)."""
    from milvus import _initialize_data_files  # pinned milvus==2.3.5; skips files whose checksum matches

    BIN_CACHE.mkdir(parents=True, exist_ok=True)
    with open(BIN_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _initialize_data_files(str(BIN_CACHE))
    return BIN_CACHE / "bin"


@contextlib.contextmanager
def milvus_server(data: Path) -> Iterator[str]:
    """Run ``milvus-server --data DATA`` on 127.0.0.1:19530; yield its URL; stop it by pid with SIGINT.

    Raises:
        MilvusServerError: the server did not start (with the reason and its log), or left processes behind.
    """
    data.mkdir(parents=True, exist_ok=True)
    (data / "bin").symlink_to(_cached_binaries(), target_is_directory=True)
    executable = Path(sys.executable).with_name("milvus-server")
    SERVER_LOCK.touch()
    with open(SERVER_LOCK, "w") as lock:
        deadline = time.monotonic() + 300
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise MilvusServerError(f"another run held {SERVER_LOCK} for 5 minutes") from None
                time.sleep(0.5)
        if _listening(ETCD_PEER_PORT):
            raise MilvusServerError(
                f"cannot start a Milvus server: port {ETCD_PEER_PORT} (embedded etcd, not configurable) on "
                f"{SERVER_HOST} is in use by another process (another Milvus?); stop it and rerun"
            )
        # 19530 unless it is taken (or still in TIME_WAIT from a server just stopped, which the
        # wrapper's bind check refuses): then any free port, passed explicitly so we know it.
        port = SERVER_PORT if _bindable(SERVER_PORT) else _free_port()
        url = f"milvus://{SERVER_HOST}:{port}"
        stdout = open(data / "server.out", "w")  # noqa: SIM115 - closed in finally
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # A new session: if SIGINT is not enough, the whole group (wrapper + server binary) can be killed.
        proc = subprocess.Popen(
            [str(executable), "--data", str(data), "--proxy-port", str(port), *SERVER_EXTRA],
            stdout=stdout,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        server_pids: list[int] = []
        try:
            started = time.monotonic()
            # The banner comes when the health check passes; the proxy may take a moment longer.
            while "Ctrl+C to exit" not in (data / "server.out").read_text(errors="replace") or not _accepts_clients(
                url
            ):
                server_pids = _children(proc.pid) or server_pids
                failed = proc.poll() is not None or (server_pids and not _alive(server_pids[0]))
                if failed or time.monotonic() - started > SERVER_START_TIMEOUT:
                    reason = "exited" if failed else f"was not ready after {SERVER_START_TIMEOUT:.0f} s"
                    output = (data / "server.out").read_text(errors="replace")[-2000:]
                    raise MilvusServerError(f"milvus-server {reason}:\n{output}\n{_log_tail(data)}")
                time.sleep(0.2)
            server_pids = _children(proc.pid) or server_pids
            yield url
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            stdout.close()
            for pid in server_pids:
                for _ in range(50):
                    if not _alive(pid):
                        break
                    time.sleep(0.1)
            left = [pid for pid in (proc.pid, *server_pids) if _alive(pid)]
            if left:
                for pid in left:
                    os.kill(pid, signal.SIGKILL)
                raise MilvusServerError(f"milvus-server left processes {left} running after SIGINT (killed them)")
