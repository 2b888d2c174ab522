"""Websocket authentication: the browser's session cookie, or ``?token=`` for scripts.

``asgi.py`` wraps this in Channels' ``AllowedHostsOriginValidator``: a handshake without an
``Origin`` header naming an allowed host is refused with 403 before it gets here
(docs/api-acquisition.md, "Websocket events").
"""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser


@database_sync_to_async
def _user_for_token(key: str):
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token and token.user.is_active else None


@database_sync_to_async
def _idle(session) -> bool:
    from backend.core.session_limits import idle_expired

    return session is not None and idle_expired(session)


class _TokenMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        query = parse_qs(scope.get("query_string", b"").decode())
        if await _idle(scope.get("session")):
            # An idle session is over, as on HTTP; only a token may still open the socket.
            scope = dict(scope, user=AnonymousUser())
        if "token" in query:
            user = await _user_for_token(query["token"][0])
            if user is not None:
                scope = dict(scope, user=user)
        return await super().__call__(scope, receive, send)


def TokenOrSessionAuthMiddleware(inner):  # noqa: N802 - reads like the other middleware stacks
    # The session stack sets scope["user"] first; a valid token then overrides it.
    return AuthMiddlewareStack(_TokenMiddleware(inner))
