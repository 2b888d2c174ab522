"""Uploads' bounds in time and space: abandoned uploads, per-user quota, free disk space.

A chunked upload is an ImportJob still ``pending`` whose staging folder has no
manifest yet (the manifest is written when the client completes the upload). One
whose last chunk is older than ``MYOLABEL_UPLOAD_IDLE_HOURS`` is taken as abandoned
(closed laptop, lost connection): otherwise every broken upload of a 1 GB series
would keep its bytes on the server forever. A job that could not be queued (broker
down) keeps its files as long, for a retry.

Every byte a client announces (a chunked file's total, a multipart request's length)
is counted against the uploader's quota (``MYOLABEL_UPLOAD_QUOTA_GB``, the sum over
their unfinished jobs) and the free space of the staging and media folders, less a
margin (``MYOLABEL_DISK_MARGIN_GB``), before a byte of it is stored.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from backend.imaging import staging
from backend.imaging.models import ImportJob
from backend.imaging.services import MANIFEST

GIB = 2**30
UNFINISHED = (ImportJob.Status.PENDING, ImportJob.Status.RUNNING)


class UploadQuotaExceeded(Exception):
    """The user's unfinished uploads would exceed their quota (answered 413)."""


class StorageFull(Exception):
    """The server's disk cannot hold the announced bytes and its margin (answered 507)."""


class UploadTooLarge(Exception):
    """One job would exceed MYOLABEL_MAX_UPLOAD_BYTES (answered 413)."""


# --- quota and disk space ------------------------------------------------------------------


def upload_reserve(*, user_id: int, nbytes: int, what: str) -> None:
    """Refuse ``nbytes`` more for ``user_id`` when over quota or disk; call inside ``transaction.atomic``.

    The lock on the user's row lasts until the caller's transaction ends, so the caller
    records the bytes (``declared_bytes``) before another upload of the user is checked.
    """
    _lock_user(user_id)
    upload_check(user_id=user_id, nbytes=nbytes, what=what)


def _lock_user(user_id: int) -> None:
    # SQLite ignores the row lock, but its IMMEDIATE transactions (settings) serialise writers anyway.
    if not connection.in_atomic_block:
        raise RuntimeError("the upload lock only lasts inside transaction.atomic")
    get_user_model().objects.select_for_update().filter(pk=user_id).first()


def upload_check(*, user_id: int, nbytes: int, what: str) -> None:
    """Raise UploadQuotaExceeded or StorageFull if ``nbytes`` more cannot be accepted (no lock, nothing kept)."""
    unfinished = ImportJob.objects.filter(status__in=UNFINISHED)
    mine = _declared(unfinished.filter(created_by_id=user_id))
    quota = int(settings.MYOLABEL_UPLOAD_QUOTA_GB * GIB)
    if mine + nbytes > quota:
        raise UploadQuotaExceeded(
            f"{what}: your unfinished uploads would hold {_size(mine + nbytes)}, more than your quota of "
            f"{_size(quota)} (MYOLABEL_UPLOAD_QUOTA_GB); wait until your imports in progress finish, or delete "
            "uploads you abandoned (DELETE /api/imports/<id>/), then upload again")
    needed = _declared(unfinished) + nbytes + int(settings.MYOLABEL_DISK_MARGIN_GB * GIB)
    for name, folder in _folders():
        free = shutil.disk_usage(folder).free
        if free < needed:
            raise StorageFull(
                f"{what}: the server's {name} has {_size(free)} free, too little for this upload and the "
                f"imports in progress plus its reserve of {settings.MYOLABEL_DISK_MARGIN_GB:g} GiB "
                "(MYOLABEL_DISK_MARGIN_GB); try again after the imports in progress finish, "
                "or ask an administrator to free disk space")


def upload_declare_file(*, job: ImportJob, name: str, total: int) -> None:
    """Announce file ``name`` of a chunked upload with ``total`` bytes, within every bound; nothing kept if refused."""
    if _known_total(job, name, total):
        return  # every further chunk of a file: no lock
    with transaction.atomic():
        _lock_user(job.created_by_id)  # one declaration of the user at a time, this job's files included
        if _known_total(job, name, total):
            return
        declared = staging.all_declared(job)
        if sum(declared.values()) + total > settings.MYOLABEL_MAX_UPLOAD_BYTES:
            raise UploadTooLarge(f"{name}: the upload would exceed {settings.MYOLABEL_MAX_UPLOAD_BYTES} bytes "
                                 "(MYOLABEL_MAX_UPLOAD_BYTES); import the files in several jobs")
        upload_check(user_id=job.created_by_id, nbytes=total, what=name)
        ImportJob.objects.filter(pk=job.pk).update(declared_bytes=F("declared_bytes") + total)
        staging.declare_total(job, name, total)


def _known_total(job: ImportJob, name: str, total: int) -> bool:
    """True when ``name`` was announced with ``total`` before; a 400 when with another size."""
    before = staging.declared_total(job, name)
    if before is not None and before != total:
        raise ValidationError({"Content-Range": f"{name}: total {total} differs from the {before} declared before"})
    return before is not None


def _declared(jobs) -> int:
    return jobs.aggregate(total=Sum("declared_bytes"))["total"] or 0


def _folders() -> list[tuple[str, Path]]:
    """The folders uploads fill, one per file system: staging, and media unless it is a bucket."""
    found = {"staging folder": Path(settings.MYOLABEL_STAGING_DIR)}
    if not settings.S3_BUCKET:
        found["media folder"] = Path(settings.MEDIA_ROOT)
    devices: dict[int, tuple[str, Path]] = {}
    for name, folder in found.items():
        folder.mkdir(parents=True, exist_ok=True)
        devices.setdefault(folder.stat().st_dev, (name, folder))
    return list(devices.values())


def _size(nbytes: int) -> str:
    if nbytes >= GIB // 10:
        return f"{nbytes / GIB:.2f} GiB"
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes} bytes"


# --- abandoned uploads ----------------------------------------------------------------------


def _last_activity(folder: Path, since: datetime) -> datetime:
    """When a byte last reached ``folder`` (``since`` when nothing did)."""
    times = [p.stat().st_mtime for p in folder.rglob("*")] if folder.is_dir() else []
    if not times:
        return since
    return datetime.fromtimestamp(max(times), tz=since.tzinfo or timezone.get_current_timezone())


def uploads_expire_stale(*, idle: timedelta | None = None, now: datetime | None = None) -> list[int]:
    """Fail every open chunked upload idle for longer than ``idle``; delete its staged files.

    Also deletes the files kept for a retry of jobs that could not be queued, once as
    old, and says so in their results. Returns the ids of the jobs whose files it
    deleted. Safe to run at any time and from several processes: a job is changed by a
    conditional UPDATE, and only its winner deletes.
    """
    idle = idle if idle is not None else timedelta(hours=settings.MYOLABEL_UPLOAD_IDLE_HOURS)
    now = now or timezone.now()
    hours = idle.total_seconds() / 3600
    expired = []
    for job in ImportJob.objects.filter(status=ImportJob.Status.PENDING).only("id", "staging_dir", "created"):
        folder = Path(job.staging_dir)
        if (folder / MANIFEST).exists() or now - _last_activity(folder, job.created) <= idle:
            continue
        error = f"upload abandoned: no chunk arrived for {hours:g} h, so its files were deleted; upload again"
        failed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.PENDING).update(
            status=ImportJob.Status.FAILED, finished=now,
            results=[{"name": "(upload)", "status": "failed", "error": error}])
        if failed:
            shutil.rmtree(folder, ignore_errors=True)
            expired.append(job.pk)
    return expired + _expire_unqueued(idle, now)


def _expire_unqueued(idle: timedelta, now: datetime) -> list[int]:
    """Delete the files kept for a retry of jobs that failed before they ran, ``idle`` after they failed."""
    expired = []
    old = ImportJob.objects.filter(awaiting_retry=True, finished__lt=now - idle)
    for job in old.only("id", "staging_dir", "results"):
        note = f"its uploaded files were deleted {idle.total_seconds() / 3600:g} h later; upload again"
        results = [{**r, "error": f"{r.get('error', '')}. {note}".lstrip(". ")} for r in job.results]
        if ImportJob.objects.filter(pk=job.pk, awaiting_retry=True).update(results=results, awaiting_retry=False):
            shutil.rmtree(job.staging_dir, ignore_errors=True)
            expired.append(job.pk)
    return expired
