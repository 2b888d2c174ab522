"""Websocket routes of every app."""

from django.urls import path

from backend.core.consumers import EventsConsumer

websocket_urlpatterns = [
    path("ws/events/", EventsConsumer.as_asgi()),
]
