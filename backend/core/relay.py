"""Embedded mode: forward RelayEvent rows written by worker processes to channel groups.

One relay task runs per event loop of the web process; it starts with the first
websocket that connects and polls the table every REALTIME_RELAY_POLL_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from backend.core.models import RelayEvent
from backend.core.realtime import MESSAGE_TYPE

log = logging.getLogger(__name__)

KEEP_EVENTS = timedelta(minutes=10)
_tasks: dict[int, asyncio.Task] = {}


def ensure_relay() -> None:
    """Start the relay on the running loop unless it already runs (embedded mode only)."""
    if not settings.REALTIME_RELAY:
        return
    loop = asyncio.get_running_loop()
    task = _tasks.get(id(loop))
    if task is None or task.done():
        _tasks[id(loop)] = loop.create_task(_relay_forever())


@database_sync_to_async
def _last_id() -> int:
    return RelayEvent.objects.aggregate(m=Max("id"))["m"] or 0


@database_sync_to_async
def _fetch_after(last_id: int) -> list[tuple[int, str, dict]]:
    return list(RelayEvent.objects.filter(id__gt=last_id).order_by("id").values_list("id", "group", "payload")[:500])


@database_sync_to_async
def _prune() -> None:
    RelayEvent.objects.filter(created__lt=timezone.now() - KEEP_EVENTS).delete()


async def _relay_forever() -> None:
    layer = get_channel_layer()
    last_id = await _last_id()
    polls = 0
    while True:
        try:
            for event_id, group, payload in await _fetch_after(last_id):
                await layer.group_send(group, {"type": MESSAGE_TYPE, "payload": payload})
                last_id = event_id
            polls += 1
            if polls % 1000 == 0:
                await _prune()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - keep relaying after a transient database error
            log.exception("relay poll failed; retrying")
        await asyncio.sleep(settings.REALTIME_RELAY_POLL_SECONDS)
