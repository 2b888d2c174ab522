"""Writes of the imaging app: import jobs and the scans they create.

An import job holds inputs (uploaded files in its staging folder, or local
paths given to ``manage.py import_ct``) described by ``import.json`` in that
folder. Running it imports every source of every input on its own: a bad
input fails with a message naming the file and leaves nothing behind (no row,
no stored file), while the others are imported. ``job.results`` lists one
entry per source: {"name", "status": "imported"|"failed", "scan_id"?, "error"?}.
Progress goes to the websocket groups of the pool's projects and of the uploader.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from backend.core import jobs
from backend.core.realtime import project_group, publish, user_group
from backend.imaging import importing
from backend.imaging.importing import ImportInput, Source
from backend.imaging.models import ImportJob, Pool
from backend.imaging.services_scans import check_not_duplicate, label_set_for_pool, scan_create
from backend.projects.models import DEFAULT_LABEL_SET_NAME, LabelSet, Project
from mltasks.errors import MyoLabelError

if TYPE_CHECKING:  # annotations only
    from django.contrib.auth.models import User

log = logging.getLogger(__name__)

MANIFEST = "import.json"
DEFAULT_LABEL_SET = DEFAULT_LABEL_SET_NAME
# One more try after a broker failure; with the broker's socket timeouts (settings) a dead
# broker costs a request a few seconds, not the 19 s of Celery's default retries.
_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0.0, "interval_step": 0.5, "interval_max": 0.5}


class QueueUnavailable(Exception):
    """The task queue (Celery broker) did not take the job: it is failed, its staged files kept."""


class NotRetryable(Exception):
    """Only a job that failed before it ran (its files still staged) can be queued again."""


# --- jobs -------------------------------------------------------------------------------


def staging_dir_new() -> Path:
    """A fresh folder under MYOLABEL_STAGING_DIR for one job's uploads."""
    path = Path(settings.MYOLABEL_STAGING_DIR) / uuid.uuid4().hex
    path.mkdir(parents=True)
    return path


@transaction.atomic
def import_job_create(
    *,
    pool: Pool,
    user,
    inputs: list[ImportInput],
    staging_dir: Path | None = None,
    label_set: LabelSet | None = None,
    labels: ImportInput | None = None,
    labelled_slices: list[int] | None = None,
    series_uid: str | None = None,
    schedule: bool = True,
) -> ImportJob:
    """Create an import job for ``inputs`` and (after commit) queue it on the ``cpu`` queue.

    See ``import_job_submit`` for the options. Raises ValidationError for arguments
    that cannot make a valid job.
    """
    staging = Path(staging_dir) if staging_dir is not None else staging_dir_new()
    job = ImportJob.objects.create(pool=pool, created_by=user, staging_dir=str(staging), label_set=label_set)
    return import_job_submit(job=job, inputs=inputs, labels=labels, labelled_slices=labelled_slices,
                             series_uid=series_uid, schedule=schedule)


@transaction.atomic
def import_job_submit(
    *,
    job: ImportJob,
    inputs: list[ImportInput],
    labels: ImportInput | None = None,
    labelled_slices: list[int] | None = None,
    series_uid: str | None = None,
    schedule: bool = True,
) -> ImportJob:
    """Fix the inputs of a created job (e.g. a completed chunked upload) and queue it after commit.

    ``labels`` is a reference label map for the single CT input; ``labelled_slices``
    (working-grid z indices) marks it as partial, else every slice with a label counts.
    ``series_uid`` restricts DICOM inputs to that series.
    """
    if not inputs:
        raise ValidationError("no file to import; add at least one DICOM zip/folder or image file")
    if labels is not None and len(inputs) != 1:
        raise ValidationError(f"a reference label map belongs to one CT, but {len(inputs)} inputs were given; "
                              "import them in separate jobs")
    if labels is not None and job.label_set is None:
        job.label_set = label_set_for_pool(job.pool)
    manifest = {
        "inputs": [{"path": str(i.path), "name": i.name} for i in inputs],
        "labels": {"path": str(labels.path), "name": labels.name} if labels else None,
        "labelled_slices": labelled_slices,
        "series_uid": series_uid or None,
    }
    (Path(job.staging_dir) / MANIFEST).write_text(json.dumps(manifest))
    job.results = [{"name": i.name, "status": "pending"} for i in inputs]
    job.save(update_fields=["label_set", "results"])
    if schedule:
        transaction.on_commit(lambda: import_job_enqueue(job))
    return job


def import_job_enqueue(job: ImportJob) -> None:
    """Hand a committed job to the ``cpu`` worker.

    When the broker cannot take it, the job is failed with the reason and its staged
    files stay for ``import_job_retry``; raises QueueUnavailable with that reason.
    """
    try:
        jobs.send("imaging.import_job_run", job.pk, retry_policy=_PUBLISH_RETRY)
    except (OperationalError, OSError) as exc:  # kombu wraps network errors; the filesystem broker does not
        hours = settings.MYOLABEL_UPLOAD_IDLE_HOURS
        reason = ("the import could not be queued because the task queue did not answer. "
                  f"The uploaded files are kept for {hours:g} h: retry (POST /api/imports/{job.pk}/retry/) "
                  "once the queue runs again, or ask an administrator to check the broker (Redis) and workers")
        results = [{"name": r["name"], "status": "failed", "error": reason} for r in job.results]
        failed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.PENDING).update(
            status=ImportJob.Status.FAILED, finished=timezone.now(), results=results, awaiting_retry=True)
        if not failed:
            return  # it ran after all (an eager run that crashed, or a publish reported late): nothing to undo
        log.error("import job %s could not be queued: %s", job.pk, exc)
        raise QueueUnavailable(reason) from exc


def import_job_retry(job: ImportJob) -> ImportJob:
    """Queue again a job that failed before it ran (the task queue was down); its files are still staged."""
    if not job.awaiting_retry:
        raise NotRetryable(f"import {job.pk} is {job.status} and its uploaded files are no longer kept; "
                           "only an import that could not be queued can be retried; upload the files again")
    manifest = json.loads((Path(job.staging_dir) / MANIFEST).read_text())
    pending = [{"name": item["name"], "status": "pending"} for item in manifest["inputs"]]
    if not ImportJob.objects.filter(pk=job.pk, awaiting_retry=True).update(
            status=ImportJob.Status.PENDING, finished=None, percent=0.0, results=pending, awaiting_retry=False):
        raise NotRetryable(f"import {job.pk} was retried by another request meanwhile")
    job.refresh_from_db()
    import_job_enqueue(job)
    job.refresh_from_db()
    return job


def import_job_run(*, job: ImportJob, on_progress=None) -> ImportJob:
    """Import every input of ``job``, each on its own; then delete the job's staging folder.

    ``on_progress(percent, name)`` is called besides the websocket events (the command line).
    """
    if job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED):
        return job
    staging = Path(job.staging_dir)
    manifest = json.loads((staging / MANIFEST).read_text())
    progress = _JobProgress(job, len(manifest["inputs"]), on_progress)
    job.status, job.results = ImportJob.Status.RUNNING, []
    job.save(update_fields=["status", "results"])
    progress.send("", 0.0)
    labels = manifest.get("labels")
    try:
        for i, item in enumerate(manifest["inputs"]):
            progress.index = i
            results = scan_import_file(
                pool=job.pool, path=Path(item["path"]), name=item["name"], user=job.created_by,
                series_uid=manifest.get("series_uid"), label_set=job.label_set,
                labels=ImportInput(Path(labels["path"]), labels["name"]) if labels else None,
                labelled_slices=manifest.get("labelled_slices"),
                on_fraction=lambda f, name=item["name"]: progress.send(name, f),
            )
            job.results = [*job.results, *results]
            job.save(update_fields=["results"])
            for r in results:
                progress.send(r["name"], 1.0, status=r["status"], **_public(r))
    except Exception:
        # Not bad input (that is a failed result above) but a crash: never leave the job "running".
        log.exception("import job %s crashed", job.pk)
        job.results = [*job.results, {"name": "", "status": "failed",
                                      "error": "the import stopped on an internal error; see the server log"}]
        job.status, job.finished = ImportJob.Status.FAILED, timezone.now()
        job.save(update_fields=["results", "status", "finished"])
        progress.send("", 1.0, final=True, status=job.status, results=job.results)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    imported = any(r["status"] == "imported" for r in job.results)
    job.status = ImportJob.Status.DONE if imported else ImportJob.Status.FAILED
    job.percent, job.finished = 100.0, timezone.now()
    job.save(update_fields=["status", "percent", "finished"])
    progress.send("", 1.0, final=True, status=job.status, results=job.results)
    return job


def _public(result: dict) -> dict:
    return {k: v for k, v in result.items() if k in ("scan_id", "error", "warning", "labels_outside")}


class _JobProgress:
    """Percent of a whole job from the fraction of its current input; sent when it moves."""

    def __init__(self, job: ImportJob, n_inputs: int, on_progress) -> None:
        self.job, self.n, self.index, self.on_progress = job, max(n_inputs, 1), 0, on_progress
        self.groups = [project_group(pid) for pid in Project.objects.filter(pools=job.pool).values_list("id", flat=True)]
        if job.created_by_id:
            self.groups.append(user_group(job.created_by_id))
        self.last = -1.0

    def send(self, name: str, fraction: float, *, status: str = "running", final: bool = False, **extra) -> None:
        percent = 100.0 if final else round(100.0 * (self.index + min(fraction, 1.0)) / self.n, 1)
        if status == "running" and percent - self.last < 2.0 and fraction < 1.0:
            return  # throttle: a relay row per event in embedded mode
        self.last = percent
        if not final:
            ImportJob.objects.filter(pk=self.job.pk).update(percent=percent)
        payload = {"type": "import", "job": self.job.pk, "percent": percent, "file": name, "status": status, **extra}
        for group in self.groups:
            publish(group, payload)
        if self.on_progress is not None:
            self.on_progress(percent, name, status)


# --- scans ------------------------------------------------------------------------------


def scan_import_file(
    *,
    pool: Pool,
    path: Path,
    name: str,
    user=None,
    series_uid: str | None = None,
    label_set: LabelSet | None = None,
    labels: ImportInput | None = None,
    labelled_slices: list[int] | None = None,
    on_fraction=None,
) -> list[dict]:
    """Import every source of one input (each series of a zip is its own scan).

    Never raises for bad input: returns one result per source, {"name", "status",
    "scan_id"} or {"name", "status": "failed", "error"}; an input that cannot be
    opened at all gives one failed result.
    """
    renames: dict[str, str] = {}
    results: list[dict] = []
    try:
        with importing.expanded_input(path, name, series_uid=series_uid, renames=renames) as sources:
            if labels is not None and len(sources) > 1:
                msg = (f"{name}: holds {len(sources)} volumes but one reference label map was given; "
                       "choose the series (series UID) the labels belong to")
                raise MyoLabelError(msg)
            for k, source in enumerate(sources):
                def fraction(f, k=k):
                    if on_fraction is not None:
                        on_fraction((k + f) / len(sources))
                results.append(_import_source(pool, source, user, label_set, labels, labelled_slices,
                                              renames, fraction))
    except MyoLabelError as exc:
        results.append({"name": name, "status": "failed", "error": importing.readable_error(exc, renames)})
    except OSError as exc:  # e.g. disk full while extracting: this input fails, the others go on
        log.exception("input %s could not be opened", name)
        results.append({"name": name, "status": "failed", "error": f"{name}: cannot be read ({exc.strerror or exc})"})
    return results


def _import_source(pool, source: Source, user: User, label_set, labels, labelled_slices, renames, fraction) -> dict:
    try:
        fraction(0.0)
        read = importing.read_source(source)
        fraction(0.3)
        check_not_duplicate(read, user)
        created = scan_create(pool=pool, read=read, user=user, label_set=label_set, labels=labels,
                              labelled_slices=labelled_slices, on_fraction=lambda f: fraction(0.3 + 0.65 * f))
    except MyoLabelError as exc:
        return {"name": source.name, "status": "failed", "error": importing.readable_error(exc, renames)}
    except Exception as exc:  # an unexpected bug must not take the other inputs down
        log.exception("import of %s failed", source.name)
        return {"name": source.name, "status": "failed",
                "error": f"{source.name}: internal error while importing ({type(exc).__name__}); see the server log"}
    result = {"name": source.name, "status": "imported", "scan_id": created.scan.pk}
    if created.labels_outside:
        result["warning"] = created.warning
        result["labels_outside"] = {
            "voxels": sum(created.labels_outside.values()),
            "labels": [{"value": v, "voxels": n} for v, n in sorted(created.labels_outside.items())],
        }
    return result
