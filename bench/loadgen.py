"""A lean load generator: HTTP/1.1 keep-alive clients on asyncio, one event loop for all.

The benchmarks share two cores with the server they measure. A thread per client
with ``requests`` took about a third of the CPU at 20 clients (GIL switches, 10 kB
body reads) and counted the client's own queueing as latency; this client parses
only the status line, ``Content-Length`` and chunked bodies, so the server keeps
the CPU and the latency is what the server took.
"""

from __future__ import annotations

import asyncio
import time

# Read buffer of a connection: a whole 512 x 512 slice, so flow control does not pause the socket mid-body.
_BUFFER = 4 * 2**20


class Client:
    """One persistent connection to ``host:port``; ``request`` returns (status, headers, body, seconds)."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None):
        self.host, self.port = host, port
        self.headers = {"Host": f"{host}:{port}", **(headers or {})}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes, float]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=_BUFFER)
        lines = [f"{method} {path} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in {**self.headers, **(headers or {})}.items()]
        if body or method in {"POST", "PUT", "PATCH"}:
            lines.append(f"Content-Length: {len(body)}")
        started = time.perf_counter()
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        status, found, content = await self._response()
        seconds = time.perf_counter() - started
        if found.get("connection", "").lower() == "close":
            await self.close()
        return status, found, content, seconds

    async def _response(self) -> tuple[int, dict[str, str], bytes]:
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        found = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                found[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        if "content-length" in found:
            return status, found, await self._reader.readexactly(int(found["content-length"]))
        if found.get("transfer-encoding", "").lower() == "chunked":
            return status, found, await self._chunked()
        return status, found, b""

    async def _chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self._reader.readexactly(size + 2))
            if size == 0:
                return b"".join(p[:-2] for p in parts)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
        self._reader = self._writer = None
