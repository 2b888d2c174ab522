"""/ws/events/: who may connect, and the embedded relay carrying worker events."""

import pytest
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from backend.core.realtime import publish, user_group
from backend.myolabel.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ORIGIN = [(b"origin", b"http://127.0.0.1")]


async def _connect(path: str):
    communicator = WebsocketCommunicator(application, path, headers=ORIGIN)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def test_anonymous_socket_is_refused():
    communicator, connected, code = await _connect("/ws/events/")
    assert (connected, code) == (False, 4401)


async def test_bad_token_is_refused():
    communicator, connected, code = await _connect("/ws/events/?token=not-a-token")
    assert (connected, code) == (False, 4401)


async def test_event_published_by_another_process_reaches_the_socket(django_user_model, settings):
    from channels.db import database_sync_to_async

    user = await database_sync_to_async(django_user_model.objects.create_user)("lead", password="pw-123456")
    token = await database_sync_to_async(Token.objects.create)(user=user)
    communicator, connected, _ = await _connect(f"/ws/events/?token={token.key}")
    assert connected
    # What a worker does: publish from synchronous code.
    await database_sync_to_async(publish)(user_group(user.id), {"type": "progress", "done": 1, "total": 2})
    message = await communicator.receive_json_from(timeout=10)
    assert message == {"type": "progress", "done": 1, "total": 2}
    await communicator.disconnect()
