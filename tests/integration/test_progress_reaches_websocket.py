"""A real task crosses broker and worker process, and its progress reaches a websocket."""

from __future__ import annotations

import json

import pytest
import websocket

pytestmark = pytest.mark.slow


def _ping_and_collect(stack, steps: int = 4) -> list[dict]:
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{stack.port}/ws/events/?token={stack.token}",
        origin=stack.url, timeout=60)
    try:
        status, body = stack.request("POST", "/api/diagnostics/ping/", {"steps": steps, "delay_seconds": 0.05})
        assert status == 202, body
        events = []
        while not events or events[-1]["type"] != "done":
            events.append(json.loads(ws.recv()))
        return events
    finally:
        ws.close()


def _assert_progress(events: list[dict], steps: int) -> None:
    progress = [e for e in events if e["type"] == "progress"]
    assert [e["done"] for e in progress] == list(range(1, steps + 1))
    assert progress[-1]["percent"] == 100.0
    assert events[-1] == {"type": "done", "phase": "ping"}


def test_progress_reaches_websocket_in_embedded_mode(embedded_stack):
    health = embedded_stack.get("/api/health/")
    assert health["mode"] == "embedded"
    assert health["checks"]["broker"]["detail"] == "filesystem"
    _assert_progress(_ping_and_collect(embedded_stack), 4)


@pytest.mark.services
def test_progress_reaches_websocket_through_redis(production_stack):
    health = production_stack.get("/api/health/")
    assert health["status"] == "ok", health
    assert health["checks"]["database"]["detail"] == "postgresql"
    assert health["checks"]["broker"]["detail"] == "redis"
    assert health["checks"]["channel_layer"]["detail"] == "RedisChannelLayer"
    _assert_progress(_ping_and_collect(production_stack), 4)
