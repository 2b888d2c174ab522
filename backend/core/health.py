"""Health checks of the services MyoLabel needs: database, broker, worker, channel layer, and
the checks apps register (``register_check``: the acquisition app's running phases).

A check returns a detail or raises. ``CheckFailed`` carries two texts: the full one,
which may name projects, steps, hosts and processes, goes only to staff; anyone else
(the endpoint needs no login) gets its ``public`` text."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from celery import current_app as celery_app
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

TIMEOUT_SECONDS = 1.0


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def _broker() -> str:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=TIMEOUT_SECONDS)
        return conn.transport_cls if isinstance(conn.transport_cls, str) else conn.transport.driver_name


def _worker() -> str:
    replies = celery_app.control.ping(timeout=TIMEOUT_SECONDS) or []
    if not replies:
        raise RuntimeError("no Celery worker answered; start one with `celery -A backend.myolabel worker -Q gpu,cpu`")
    return ", ".join(sorted(name for reply in replies for name in reply))


async def _layer_round_trip() -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "health.check", "token": token})
    message = await layer.receive(channel)
    if message.get("token") != token:
        raise RuntimeError("channel layer returned a different message")
    return type(layer).__name__


def _channel_layer() -> str:
    name = async_to_sync(_layer_round_trip)()
    return f"{name} + database relay" if settings.REALTIME_RELAY else name


CHECKS: dict[str, Callable[[], str]] = {
    "database": _database,
    "broker": _broker,
    "worker": _worker,
    "channel_layer": _channel_layer,
}


class CheckFailed(RuntimeError):
    """A failed check: ``str(self)`` for staff, ``public`` for anyone."""

    def __init__(self, detail: str, *, public: str | None = None) -> None:
        super().__init__(detail)
        self.public = public or detail


def register_check(name: str, check: Callable[[], str]) -> None:
    """Add an app's check (from its ``AppConfig.ready``)."""
    CHECKS[name] = check


def health_report(*, include_worker: bool = True, detailed: bool = False) -> dict[str, Any]:
    """Run every check; each reports ok, a detail and its duration in ms.

    ``detailed``: failed checks say everything they know (staff only).
    """
    checks: dict[str, dict[str, Any]] = {}
    for name, check in CHECKS.items():
        if name == "worker" and not include_worker:
            continue
        started = time.perf_counter()
        try:
            checks[name] = {"ok": True, "detail": check()}
        except CheckFailed as exc:
            checks[name] = {"ok": False, "detail": str(exc) if detailed else exc.public}
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not fail
            checks[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        checks[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return {
        "status": "ok" if all(c["ok"] for c in checks.values()) else "degraded",
        "mode": settings.MODE,
        "checks": checks,
    }
