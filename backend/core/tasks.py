"""Core Celery tasks: a diagnostic that exercises broker, worker and websocket path."""

from __future__ import annotations

import time

from celery import shared_task

from backend.core.realtime import publish, user_group


@shared_task(name="core.diagnostics_ping")  # default queue: cpu (settings)
def diagnostics_ping(user_id: int, steps: int, delay_seconds: float) -> int:
    """Publish ``steps`` progress events to the user's group, then a done event."""
    group = user_group(user_id)
    for done in range(1, steps + 1):
        time.sleep(delay_seconds)
        publish(group, {"type": "progress", "phase": "ping", "done": done, "total": steps,
                        "percent": round(100 * done / steps, 1)})
    publish(group, {"type": "done", "phase": "ping"})
    return steps
