"""Websocket consumers of the core app."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from backend.core.realtime import user_group
from backend.core.relay import ensure_relay


class GroupEventsConsumer(AsyncJsonWebsocketConsumer):
    """Base: an authenticated socket that receives every event of its groups.

    Subclasses return the groups a user may follow from ``groups_for``; returning
    None closes the socket (4404: nothing there for this user).
    """

    async def groups_for(self, user) -> list[str] | None:
        return None

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        groups = await self.groups_for(user)
        if groups is None:
            await self.close(code=4404)
            return
        self.joined = groups
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        ensure_relay()
        await self.accept()

    async def disconnect(self, code):
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def relay_event(self, message):
        await self.send_json(message["payload"])


class EventsConsumer(GroupEventsConsumer):
    """``/ws/events/``: the events addressed to the logged-in user."""

    async def groups_for(self, user) -> list[str] | None:
        return [user_group(user.id)]
