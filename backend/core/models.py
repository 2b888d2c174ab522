"""Rows the realtime relay needs in embedded mode."""

from django.db import models


class RelayEvent(models.Model):
    """One websocket event waiting to cross from a worker process to the web process.

    Only used when there is no Redis (embedded mode): the worker writes a row, the
    web process's relay sends it to the channel group and later prunes it.
    """

    group = models.CharField(max_length=100)
    payload = models.JSONField()
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.group}: {self.payload.get('type', '?')}"
