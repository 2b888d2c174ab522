"""The command line of the web server, shared by ``manage.py up``, integration tests and benchmarks.

One process: daphne (HTTP and websockets). Several processes: N uvicorn processes,
each on its own SO_REUSEPORT socket (``backend.core.serve``, which says why), so
Django's per-request Python work runs on N cores; uvicorn's own supervisor where the
platform lacks SO_REUSEPORT. Several processes need the Redis channel layer (production
mode): embedded mode's in-memory layer lives in one process.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

ASGI_APP = "backend.myolabel.asgi:application"


def web_server_command(host: str, port: int, processes: int = 1) -> list[str]:
    """argv that serves MyoLabel on ``host:port`` with ``processes`` (>= 1) web processes."""
    if processes < 1:
        raise ValueError(f"need at least one web process, not {processes}")
    if processes == 1:
        return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), ASGI_APP]
    if reuse_port_available():
        return [sys.executable, "-m", "backend.core.serve", "--host", host, "--port", str(port),
                "--workers", str(processes)]
    return [sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port), "--workers", str(processes),
            "--no-access-log", "--proxy-headers", ASGI_APP]


def reuse_port_available() -> bool:
    """Whether the kernel spreads connections across sockets bound with SO_REUSEPORT (Linux)."""
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


LISTEN, ESTABLISHED = "0A", "01"  # socket states as /proc/net/tcp writes them


def listening_sockets(port: int) -> int:
    """How many sockets listen on TCP ``port`` on this host (Linux /proc; 0 elsewhere).

    Callers that start several web processes wait for all of them: a worker binds its
    socket only once Django is loaded, and until then the kernel sends every new
    connection to the workers already listening.
    """
    return len(tcp_sockets(port, LISTEN))


def tcp_sockets(port: int, state: str) -> set[str]:
    """Inodes of this host's TCP sockets whose local port is ``port`` and whose state is ``state``."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if table.exists():
            for line in table.read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                    found.add(fields[9])
    return found


def all_listening(port: int, processes: int) -> bool:
    """Whether every one of ``processes`` web processes on ``port`` listens (always true with one
    process, or where the kernel does not spread connections over SO_REUSEPORT sockets)."""
    return processes == 1 or not reuse_port_available() or listening_sockets(port) >= processes
