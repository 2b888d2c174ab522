"""Sending work to the Celery workers by task name, so services never import task modules.

Task modules (``tasks.py`` of each app) define the tasks under stable names
("acquisition.step_infer", "imaging.import_job_run"...); services name the task they
want done. Celery finds the task in its registry (the apps' task modules, discovered on
first use), so ``CELERY_TASK_ALWAYS_EAGER`` and every
``apply_async`` option behave as with the task object itself.
"""

from __future__ import annotations

from celery import current_app


def send(name: str, *args, queue: str | None = None, **options) -> None:
    """Queue task ``name`` with positional ``args`` (on ``queue``, or the task's default route)."""
    task = _task(name)
    task.apply_async(args, queue=queue, **options) if queue else task.apply_async(args, **options)


def _task(name: str):
    tasks = current_app.tasks
    if name not in tasks:
        # A worker imports the apps' task modules when it starts; a web process never does
        # until asked: this runs the autodiscovery once.
        current_app.loader.import_default_modules()
    return tasks[name]  # KeyError: no tasks module defines this name
