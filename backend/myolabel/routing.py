"""Websocket routes of every app."""

from django.urls import path

import backend.core.ids  # noqa: F401  (registers the <id:...> converter)
from backend.core.consumers import EventsConsumer
from backend.projects.consumers import ProjectEventsConsumer

websocket_urlpatterns = [
    path("ws/events/", EventsConsumer.as_asgi()),
    path("ws/projects/<id:project_id>/", ProjectEventsConsumer.as_asgi()),
]
