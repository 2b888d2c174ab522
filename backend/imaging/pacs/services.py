"""Writes of the PACS room: archives, and import jobs that retrieve series over WADO-RS.

An archive is stored only once it answered a QIDO search with the given credentials, so a
wrong address or password is refused on the spot (a ValidationError with the reason's code)
and nothing is kept.

A PACS import is an ordinary ImportJob: ``pacs_import_submit`` creates it with ``pacs.json``
(archive, study, series) in its staging folder and queues ``imaging.pacs_import_run``; the
worker retrieves every series into ``files/<n>/`` (progress events of type "import" with status
"retrieving"), then hands the folders to ``import_job_run``, the same code an upload goes
through: the same checks, messages, results and progress. A series the archive would not send
is a failed result beside the imported ones.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from backend.core import jobs
from backend.core.realtime import project_group, publish, user_group
from backend.imaging.importing import ImportInput
from backend.imaging.models import DicomWebArchive, ImportJob, Pool
from backend.imaging.pacs.client import (
    ANY_TRANSFER_SYNTAX,
    PacsError,
    archive_client,
    client_for,
    pacs_call,
)
from backend.imaging.pacs.secrets import CredentialsUnreadable, encrypt_password
from backend.imaging.services import (
    QueueUnavailable,
    import_job_run,
    import_job_submit,
    staging_dir_new,
)
from backend.projects.models import LabelSet, Project

log = logging.getLogger(__name__)

PACS_MANIFEST = "pacs.json"
MAX_SERIES = 50  # per import job: a study's worth
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


# --- archives ------------------------------------------------------------------------------


def archive_check(*, url: str, username: str, password: str) -> None:
    """Ask the archive for one study; raise ValidationError (code pacs_*) when that fails."""
    client = archive_client(url=url, username=username, password=password)
    try:
        pacs_call("checking the archive", url, lambda: client.search_for_studies(limit=1))
    except PacsError as exc:
        code = {"PacsUnreachable": "pacs_unreachable", "PacsRefused": "pacs_refused",
                "PacsNotDicomWeb": "pacs_not_dicomweb"}.get(type(exc).__name__, "pacs_error")
        raise ValidationError(str(exc), code=code) from exc


def _check_name(name: str, *, exclude: int | None = None) -> str:
    name = name.strip()
    if not name:
        raise ValidationError("give the archive a name", code="invalid")
    if DicomWebArchive.objects.filter(name=name).exclude(pk=exclude).exists():
        raise ValidationError(f"an archive named {name!r} exists already; choose another name", code="invalid")
    return name


def archive_create(*, name: str, url: str, username: str = "", password: str = "", user) -> DicomWebArchive:
    """Store an archive after it answered a search with these credentials (the password encrypted)."""
    name = _check_name(name)
    archive_check(url=url, username=username, password=password)
    return DicomWebArchive.objects.create(name=name, url=url.rstrip("/"), username=username,
                                          password_encrypted=encrypt_password(password), created_by=user)


def archive_update(*, archive: DicomWebArchive, name: str | None = None, url: str | None = None,
                   username: str | None = None, password: str | None = None) -> DicomWebArchive:
    """Change what is given (None: kept; password '' removes it), checked against the archive first."""
    from backend.imaging.pacs.secrets import decrypt_password

    name = _check_name(name, exclude=archive.pk) if name is not None else archive.name
    url = url.rstrip("/") if url is not None else archive.url
    username = username if username is not None else archive.username
    if password is None:
        password = decrypt_password(archive.password_encrypted, archive_name=archive.name)
    archive_check(url=url, username=username, password=password)
    archive.name, archive.url, archive.username = name, url, username
    archive.password_encrypted = encrypt_password(password)
    archive.save()
    return archive


def archive_delete(*, archive: DicomWebArchive) -> None:
    archive.delete()  # scans imported from it stay: they are the product's own copies


# --- imports -------------------------------------------------------------------------------


def _checked_uids(study_uid: str, series_uids: list[str]) -> list[str]:
    bad = [uid for uid in [study_uid, *series_uids] if not _UID.match(uid) or len(uid) > 64]
    if bad:
        raise ValidationError(f"{bad[0]!r} is not a DICOM UID (digits and dots, at most 64 characters)")
    unique = list(dict.fromkeys(series_uids))
    if not unique:
        raise ValidationError("choose at least one series to import")
    if len(unique) > MAX_SERIES:
        raise ValidationError(f"{len(unique)} series were chosen; import at most {MAX_SERIES} at once")
    return unique


@transaction.atomic
def pacs_import_submit(*, archive: DicomWebArchive, pool: Pool, user, study_uid: str, series_uids: list[str],
                       label_set: LabelSet | None = None) -> ImportJob:
    """An import job for series of one study of ``archive``, queued on the ``cpu`` worker after commit."""
    series = _checked_uids(study_uid, series_uids)
    staging = staging_dir_new()
    spec = {"archive": archive.pk, "study_uid": study_uid, "series": series}
    (staging / PACS_MANIFEST).write_text(json.dumps(spec))
    job = ImportJob.objects.create(pool=pool, created_by=user, staging_dir=str(staging), label_set=label_set,
                                   results=[{"name": f"series {uid}", "status": "pending"} for uid in series])
    transaction.on_commit(lambda: _enqueue(job))
    return job


def _enqueue(job: ImportJob) -> None:
    try:
        jobs.send("imaging.pacs_import_run", job.pk)
    except (OperationalError, OSError) as exc:  # kombu wraps network errors; the filesystem broker does not
        reason = ("the import could not be queued because the task queue did not answer; nothing was "
                  "retrieved. Start the import again once the queue runs, or ask an administrator to check "
                  "the broker (Redis) and workers")
        results = [{"name": r["name"], "status": "failed", "error": reason} for r in job.results]
        ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.PENDING).update(
            status=ImportJob.Status.FAILED, finished=timezone.now(), results=results)
        shutil.rmtree(job.staging_dir, ignore_errors=True)
        log.error("PACS import job %s could not be queued: %s", job.pk, exc)
        raise QueueUnavailable(reason) from exc


def pacs_import_run(*, job: ImportJob) -> ImportJob:
    """Worker side: retrieve the job's series into its staging folder, then import them as an upload."""
    # One worker takes the job (a task delivered twice runs once).
    if not ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.PENDING).update(
            status=ImportJob.Status.RUNNING):
        job.refresh_from_db()
        return job
    job.status = ImportJob.Status.RUNNING
    staging = Path(job.staging_dir)
    try:
        spec = json.loads((staging / PACS_MANIFEST).read_text())
        archive = DicomWebArchive.objects.filter(pk=spec["archive"]).first()
        progress = _Retrieval(job, len(spec["series"]))
        if archive is None:
            failed = [_failed(f"series {uid}", "the archive was removed before its import ran; import again")
                      for uid in spec["series"]]
            return _fail(job, failed, progress)
        inputs, failed = _retrieve_all(archive, spec, staging / "files", progress)
        if not inputs:
            return _fail(job, failed, progress)
        import_job_submit(job=job, inputs=inputs, schedule=False)
        job = import_job_run(job=job)  # deletes the staging folder
    except Exception:
        log.exception("PACS import job %s crashed", job.pk)
        _fail(job, [_failed("", "the import stopped on an internal error; see the server log")], None)
        raise
    if failed:
        job.results = [*job.results, *failed]
        job.save(update_fields=["results"])
    return job


def _failed(name: str, error: str) -> dict:
    return {"name": name, "status": "failed", "error": error}


def _fail(job: ImportJob, results: list[dict], progress: _Retrieval | None) -> ImportJob:
    job.status, job.finished, job.results = ImportJob.Status.FAILED, timezone.now(), results
    job.save(update_fields=["status", "finished", "results"])
    shutil.rmtree(job.staging_dir, ignore_errors=True)
    if progress is not None:
        progress.send("", 1.0, status=job.status, final=True, results=results)
    return job


def _retrieve_all(archive: DicomWebArchive, spec: dict, root: Path, progress: _Retrieval):
    """(inputs, failed results): one input folder per series the archive sent."""
    try:
        client = client_for(archive)
    except CredentialsUnreadable as exc:
        return [], [_failed(f"series {uid}", str(exc)) for uid in spec["series"]]
    inputs, failed = [], []
    for k, uid in enumerate(spec["series"]):
        progress.index = k
        name = f"series {uid}"
        try:
            name = _series_name(client, archive, spec["study_uid"], uid)
            folder = root / f"{k:03d}"
            count = _retrieve_series(client, archive, spec["study_uid"], uid, folder,
                                     lambda n, name=name: progress.send(name, n))
        except PacsError as exc:
            failed.append(_failed(name, str(exc)))
            continue
        if count == 0:
            failed.append(_failed(name, f"{name}: the archive sent no image of this series; check it in the PACS"))
            continue
        inputs.append(ImportInput(folder, name))
    return inputs, failed


def _series_name(client, archive: DicomWebArchive, study_uid: str, series_uid: str) -> str:
    """A readable name for the series' scan: its description and number, and the archive."""
    rows = pacs_call(f"series {series_uid}", archive.url, lambda: client.search_for_series(
        study_instance_uid=study_uid, search_filters={"SeriesInstanceUID": series_uid},
        fields=["SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances"]))
    if not rows:
        raise PacsError(f"series {series_uid}: not found in study {study_uid} of archive {archive.name!r}; "
                        "it may have been moved or deleted; search again")
    description = (rows[0].get("0008103E", {}).get("Value") or [""])[0]
    number = (rows[0].get("00200011", {}).get("Value") or [""])[0]
    label = " ".join(str(p) for p in (description, f"#{number}" if number != "" else "") if p) or series_uid
    return f"{label} ({archive.name})"[:200]


def _retrieve_series(client, archive, study_uid: str, series_uid: str, folder: Path, on_count) -> int:
    """Write every instance of the series into ``folder`` as it arrives; return how many."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0

    def stream() -> int:
        nonlocal count
        for ds in client.iter_series(study_uid, series_uid, media_types=ANY_TRANSFER_SYNTAX):
            ds.save_as(folder / f"{count:05d}.dcm", enforce_file_format=True)
            count += 1
            on_count(count)
        return count

    return pacs_call(f"series {series_uid}", archive.url, stream)


class _Retrieval:
    """Progress of the retrieval: instances of the current series of all series, to the import's groups."""

    EVERY = 10  # instances between two events

    def __init__(self, job: ImportJob, n_series: int) -> None:
        self.job, self.n, self.index = job, max(n_series, 1), 0
        projects = Project.objects.filter(pools=job.pool).values_list("id", flat=True)
        self.groups = [project_group(pid) for pid in projects]
        if job.created_by_id:
            self.groups.append(user_group(job.created_by_id))

    def send(self, name: str, count: float, *, status: str = "retrieving", final: bool = False, **extra) -> None:
        if status == "retrieving" and count % self.EVERY != 1:
            return  # throttle: a relay row per event in embedded mode
        percent = 100.0 if final else round(100.0 * self.index / self.n, 1)
        payload = {"type": "import", "job": self.job.pk, "percent": percent, "file": name, "status": status,
                   "retrieved": int(count), **extra}
        for group in self.groups:
            publish(group, payload)
