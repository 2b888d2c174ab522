"""Websocket routes of every app."""

from django.urls import path

from backend.core.consumers import EventsConsumer
from backend.projects.consumers import ProjectEventsConsumer

websocket_urlpatterns = [
    path("ws/events/", EventsConsumer.as_asgi()),
    path("ws/projects/<int:project_id>/", ProjectEventsConsumer.as_asgi()),
]
