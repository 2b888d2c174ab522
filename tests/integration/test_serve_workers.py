"""``python -m backend.core.serve``: worker processes on their own sockets, spread, restarted, stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.core.webserver import (
    ESTABLISHED,
    listening_sockets,
    reuse_port_available,
    tcp_sockets,
    web_server_command,
)
from tests.integration.stack import REPO, free_port

pytestmark = pytest.mark.skipif(not reuse_port_available(), reason="SO_REUSEPORT spreading needs Linux")


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(p) for p in found]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /no-such-page HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.1 ")
    except OSError:
        return False


def _wait(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


@pytest.fixture
def server(tmp_path):
    port = free_port()
    env = {**os.environ, "MYOLABEL_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    for name in ("DATABASE_URL", "REDIS_URL", "MYOLABEL_MODE"):
        env.pop(name, None)
    log = open(tmp_path / "web.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(web_server_command("127.0.0.1", port, 2), cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        _wait(lambda: len(_children(proc.pid)) == 2 and listening_sockets(port) == 2 and _answers(port))
        yield proc, port, env, tmp_path / "web.log"
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        log.close()


def test_connections_are_spread_over_both_workers(server):
    proc, port, _, _ = server
    workers = _children(proc.pid)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        time.sleep(1.0)  # each worker's loop accepts its share
        established = tcp_sockets(port, ESTABLISHED)
        per_worker = [len(_socket_inodes(pid) & established) for pid in workers]
    finally:
        for client in clients:
            client.close()
    assert sum(per_worker) == 40
    assert min(per_worker) >= 8, per_worker  # uvicorn --workers gave one process all 40 in a burst


def test_a_killed_worker_is_replaced_and_sigterm_stops_everything(server):
    proc, port, _, _ = server
    first, second = _children(proc.pid)
    os.kill(first, signal.SIGKILL)
    _wait(lambda: first not in _children(proc.pid) and len(_children(proc.pid)) == 2)
    _wait(lambda: listening_sockets(port) == 2 and _answers(port))
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    for pid in workers:
        _wait(lambda pid=pid: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2])
    assert not _answers(port)


def test_a_port_in_use_stops_with_a_message(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "backend.core.serve", "--port", str(port), "--workers", "2"],
                              cwd=REPO, env={**os.environ, "MYOLABEL_DATA_DIR": str(tmp_path)},
                              capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "exited with status" in done.stderr and "at start; stopping" in done.stderr
    assert "Address already in use" in done.stderr
