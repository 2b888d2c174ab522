"""Calling an ASGI application in a test, as a server would, to compare fast paths with Django."""

from __future__ import annotations

import asyncio

from asgiref.sync import async_to_sync
from django.core import signals
from django.core.asgi import get_asgi_application
from django.db import close_old_connections

# What a parity test expects of each request: the fast path answers it, or Django does.
SERVED = "served by the fast path"
PASSED = "passed to Django"


class CountingDjango:
    """The Django ASGI app, counting the requests that reach it."""

    def __init__(self):
        self.app = get_asgi_application()
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        await self.app(scope, receive, send)


def call(app, method: str, path: str, query: str = "", headers: dict | None = None, body: bytes = b"",
         chunks: int = 1):
    """(status, headers without Date, body) of one request through an ASGI app; the body arrives in ``chunks``.

    A body gets its Content-Length header, as clients send it, unless ``headers`` give one (None: none).
    """
    if body:
        headers = {"Content-Length": str(len(body)), **(headers or {})}
    headers = {k: v for k, v in (headers or {}).items() if v is not None}
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
             "root_path": "", "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
             "headers": [(k.lower().encode(), v.encode()) for k, v in {"Host": "testserver", **(headers or {})}.items()]}
    size = -(-len(body) // chunks) if body else 0
    parts = [body[i * size:(i + 1) * size] for i in range(chunks)] if body else [b""]
    incoming = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1} for i, part in enumerate(parts)]
    messages = []

    async def receive():
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # the client never disconnects

    async def send(message):
        messages.append(message)

    # As Django's test client does: connection housekeeping would end the test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        async_to_sync(app)(scope, receive, send)
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    start = messages[0]
    found = {k.decode().lower(): v.decode() for k, v in start["headers"] if k.lower() != b"date"}
    return start["status"], found, b"".join(m.get("body", b"") for m in messages[1:])
