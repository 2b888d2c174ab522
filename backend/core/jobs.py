"""Sending work to the Celery workers by task name, so services never import task modules.

Task modules (``tasks.py`` of each app) define the tasks under stable names
("acquisition.step_infer", "imaging.import_job_run"...); services name the task they
want done. Celery finds the task in its registry (the apps' task modules are imported
when the Celery app is finalised), so ``CELERY_TASK_ALWAYS_EAGER`` and every
``apply_async`` option behave as with the task object itself.
"""

from __future__ import annotations

from celery import current_app


def send(name: str, *args, queue: str | None = None, **options) -> None:
    """Queue task ``name`` with positional ``args`` (on ``queue``, or the task's default route)."""
    task = current_app.tasks[name]  # KeyError names a task that no tasks module defines
    task.apply_async(args, queue=queue, **options) if queue else task.apply_async(args, **options)
