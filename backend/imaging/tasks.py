"""Celery tasks of the imaging app (``cpu`` queue): fetch by id, call the service."""

from __future__ import annotations

from celery import shared_task

from backend.imaging.models import ImportJob
from backend.imaging.pacs.services import pacs_import_run
from backend.imaging.services import import_job_run


# No result is stored: the job row holds it, and sending a task whose result is kept first
# subscribes to the result backend, which retries for about 19 s when Redis is down.
@shared_task(name="imaging.import_job_run", ignore_result=True)  # default queue: cpu (settings)
def import_job_run_task(job_id: int) -> str:
    job = ImportJob.objects.select_related("pool", "created_by", "label_set").get(pk=job_id)
    return import_job_run(job=job).status


@shared_task(name="imaging.pacs_import_run", ignore_result=True)  # default queue: cpu (settings)
def pacs_import_run_task(job_id: int) -> str:
    job = ImportJob.objects.select_related("pool", "created_by", "label_set").get(pk=job_id)
    return pacs_import_run(job=job).status
