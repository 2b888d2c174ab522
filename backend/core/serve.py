"""Several uvicorn processes on one port, each with its own listening socket (SO_REUSEPORT).

    python -m backend.core.serve --host 127.0.0.1 --port 8000 --workers 2

Why not ``uvicorn --workers``: its workers share one socket, and asyncio accepts every
pending connection in one go, so a burst of clients (20 annotators opening the
viewer, or a proxy's keep-alive pool) lands on whichever process woke first. The
slice benchmark showed it: one process at 90 % CPU, the other idle, half the
throughput. With a socket per process the kernel spreads new connections across
them. Without SO_REUSEPORT (not Linux) this falls back to ``uvicorn --workers``.

The parent only supervises: it restarts a worker that dies, except one that exits
by itself within its first seconds (a port in use, a broken configuration): then
everything stops with that status. SIGTERM or Ctrl+C stops all workers.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from backend.core.webserver import ASGI_APP

_EARLY_EXIT_SECONDS = 10.0


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_worker(host: str, port: int) -> None:
    """One uvicorn server on its own SO_REUSEPORT socket (this process)."""
    import uvicorn

    sock = _listening_socket(host, port)
    config = uvicorn.Config(ASGI_APP, proxy_headers=True, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def supervise(host: str, port: int, workers: int) -> int:
    """Start ``workers`` worker processes and keep them running; the exit status to return."""
    argv = [sys.executable, "-m", "backend.core.serve", "--host", host, "--port", str(port), "--worker"]
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = {subprocess.Popen(argv): time.monotonic() for _ in range(workers)}
    try:
        while not stopping:
            time.sleep(0.2)
            for child, since in list(started.items()):
                if child.poll() is None:
                    continue
                del started[child]
                if child.returncode >= 0 and time.monotonic() - since < _EARLY_EXIT_SECONDS:
                    print(f"web worker {child.pid} exited with status {child.returncode} at start; stopping",
                          file=sys.stderr, flush=True)
                    return child.returncode or 1
                print(f"web worker {child.pid} exited with status {child.returncode}; starting another",
                      file=sys.stderr, flush=True)
                started[subprocess.Popen(argv)] = time.monotonic()
        return 0
    finally:
        for child in started:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in started:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.host, args.port)
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.myolabel.settings")
    sys.exit(supervise(args.host, args.port, args.workers))


if __name__ == "__main__":
    main()
