"""The Celery application. Queues: ``gpu`` (training, MC inference, selection) and
``cpu`` (import, export, housekeeping); workers choose theirs with ``-Q``."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.myolabel.settings")

app = Celery("myolabel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = tuple(Queue(name, Exchange(name), routing_key=name) for name in ("gpu", "cpu"))
app.autodiscover_tasks()
