"""Abandoned chunked uploads: fail them and free their staged bytes.

A chunked upload is an ImportJob still ``pending`` whose staging folder has no
manifest yet (the manifest is written when the client completes the upload). One
whose last chunk is older than ``MYOLABEL_UPLOAD_IDLE_HOURS`` is taken as abandoned
(closed laptop, lost connection): otherwise every broken upload of a 1 GB series
would keep its bytes on the server forever.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from backend.imaging.models import ImportJob
from backend.imaging.services import MANIFEST


def _last_activity(staging: Path, created: datetime) -> datetime:
    """When a byte last reached ``staging`` (the job's creation when nothing did)."""
    times = [p.stat().st_mtime for p in staging.rglob("*")] if staging.is_dir() else []
    if not times:
        return created
    return datetime.fromtimestamp(max(times), tz=created.tzinfo or timezone.get_current_timezone())


def uploads_expire_stale(*, idle: timedelta | None = None, now: datetime | None = None) -> list[int]:
    """Fail every open chunked upload idle for longer than ``idle``; delete its staged files.

    Returns the ids of the jobs it failed. Safe to run at any time and from several
    processes: a job is failed by a conditional UPDATE, and only its winner deletes.
    """
    idle = idle if idle is not None else timedelta(hours=settings.MYOLABEL_UPLOAD_IDLE_HOURS)
    now = now or timezone.now()
    expired = []
    for job in ImportJob.objects.filter(status=ImportJob.Status.PENDING).only("id", "staging_dir", "created"):
        staging = Path(job.staging_dir)
        if (staging / MANIFEST).exists() or now - _last_activity(staging, job.created) <= idle:
            continue
        hours = idle.total_seconds() / 3600
        error = f"upload abandoned: no chunk arrived for {hours:g} h, so its files were deleted; upload again"
        failed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.PENDING).update(
            status=ImportJob.Status.FAILED, finished=now,
            results=[{"name": "(upload)", "status": "failed", "error": error}])
        if failed:
            shutil.rmtree(staging, ignore_errors=True)
            expired.append(job.pk)
    return expired
