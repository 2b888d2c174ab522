"""Publishing events to websocket groups from any process (web or worker).

With Redis the event goes straight to the channel layer. In embedded mode the
in-memory layer lives in the web process only, so a worker writes a RelayEvent row
and ``backend.core.relay`` forwards it. Callers do not need to know which.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from backend.core.models import RelayEvent

log = logging.getLogger(__name__)

# Consumers implement ``relay_event``; the channel layer maps "relay.event" to it.
MESSAGE_TYPE = "relay.event"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def project_group(project_id: int) -> str:
    return f"project-{project_id}"


def publish(group: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` (JSON-serialisable, with a "type" key) to every socket in ``group``.

    Never raises: progress is informative, and losing one event must not fail the work
    that reported it.
    """
    try:
        if settings.REALTIME_RELAY:
            RelayEvent.objects.create(group=group, payload=payload)
        else:
            async_to_sync(get_channel_layer().group_send)(group, {"type": MESSAGE_TYPE, "payload": payload})
    except Exception:  # noqa: BLE001 - see docstring
        log.exception("could not publish %s event to %s", payload.get("type"), group)
