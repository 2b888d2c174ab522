"""Websocket handshakes need an Origin of an allowed host (docs/api-acquisition.md, "Origin"):
what a script must send, against the real server (daphne), as a non-browser client sees it."""

from __future__ import annotations

import pytest
import websocket
from rest_framework.authtoken.models import Token

from tests.backend.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _open(url: str, **options):
    return websocket.create_connection(url, timeout=5, **options)


def test_a_handshake_without_origin_is_refused_with_403_and_one_with_it_opens(asgi_server):
    token = Token.objects.create(user=UserFactory()).key
    url = asgi_server.replace("http://", "ws://") + f"/ws/events/?token={token}"
    for options in ({"suppress_origin": True}, {"origin": "https://elsewhere.example.org"}):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            _open(url, **options)
        assert refused.value.status_code == 403
    ws = _open(url, origin=asgi_server)  # what docs/api-acquisition.md tells a script to send
    assert ws.connected
    ws.close()
