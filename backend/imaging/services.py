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
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from backend.core.realtime import project_group, publish, user_group
from backend.imaging import importing
from backend.imaging.importing import DuplicateScan, ReadSource, Source
from backend.imaging.models import ImportJob, Pool, ReferenceLabelMap, Scan, ScanFile
from backend.imaging.volumes import save_array
from backend.projects.models import DEFAULT_LABEL_SET_NAME, LabelSet, Project
from mltasks.errors import MyoLabelError

log = logging.getLogger(__name__)

MANIFEST = "import.json"
DEFAULT_LABEL_SET = DEFAULT_LABEL_SET_NAME


@dataclass(frozen=True)
class ImportInput:
    """One input of a job: a local path and the name the user knows it by."""

    path: Path
    name: str


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
        from backend.imaging.tasks import import_job_run_task

        transaction.on_commit(lambda: import_job_run_task.delay(job.id))
    return job


def label_set_for_pool(pool: Pool) -> LabelSet:
    """The label set of the projects using ``pool`` when they agree, else the default set."""
    ids = set(Project.objects.filter(pools=pool).values_list("label_set_id", flat=True))
    if len(ids) == 1:
        return LabelSet.objects.get(pk=ids.pop())
    found = LabelSet.objects.filter(name=DEFAULT_LABEL_SET).first()
    if found is None:
        raise ValidationError("choose the label set of the reference label map")
    return found


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
    return {k: v for k, v in result.items() if k in ("scan_id", "error")}


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


def _import_source(pool, source: Source, user, label_set, labels, labelled_slices, renames, fraction) -> dict:
    try:
        fraction(0.0)
        read = importing.read_source(source)
        fraction(0.3)
        _check_not_duplicate(read, user)
        scan = scan_create(pool=pool, read=read, user=user, label_set=label_set, labels=labels,
                           labelled_slices=labelled_slices, on_fraction=lambda f: fraction(0.3 + 0.65 * f))
    except MyoLabelError as exc:
        return {"name": source.name, "status": "failed", "error": importing.readable_error(exc, renames)}
    except Exception as exc:  # an unexpected bug must not take the other inputs down
        log.exception("import of %s failed", source.name)
        return {"name": source.name, "status": "failed",
                "error": f"{source.name}: internal error while importing ({type(exc).__name__}); see the server log"}
    return {"name": source.name, "status": "imported", "scan_id": scan.pk}


def _check_not_duplicate(read: ReadSource, user) -> None:
    uid = read.source.series_uid
    existing = Scan.objects.filter(series_uid=uid).first() if uid else None
    why = f"series {uid}"
    if existing is None:
        existing = Scan.objects.filter(content_hash=read.content_hash).first()
        why = "the same image data"
    if existing is None:
        return
    from backend.projects.access import scans_visible_to

    where = (f'as scan "{existing.name}" (id {existing.pk}) in pool "{existing.pool.name}"'
             if user is None or scans_visible_to(user).filter(pk=existing.pk).exists()
             else "in a pool you cannot see; ask an administrator")
    raise DuplicateScan(f"{read.source.name}: {why} is already imported {where}; it was not imported again")


def scan_create(
    *,
    pool: Pool,
    read: ReadSource,
    user=None,
    label_set: LabelSet | None = None,
    labels: ImportInput | None = None,
    labelled_slices: list[int] | None = None,
    on_fraction=None,
) -> Scan:
    """Store a checked CT (working-grid volume, original files, reference labels) and its rows.

    Every check runs before the first byte is stored; files are written before the
    (short) transaction that creates the rows, and deleted again if anything fails.
    """
    on_fraction = on_fraction or (lambda f: None)
    volume, target = importing.working_volume(read.hu, read.geometry, on_fraction=lambda f: on_fraction(0.6 * f))
    reference = None
    if labels is not None:
        label_set = label_set or label_set_for_pool(pool)
        allowed = {0, *label_set.labels.values_list("value", flat=True)}
        reference = importing.read_reference_labels(labels.path, labels.name, read, target, allowed=allowed)
        if labelled_slices is not None:
            reference = (reference[0], _checked_slices(labels.name, labelled_slices, target.shape[0]))
    written: list[str] = []
    try:
        scan = _scan_row(pool, read, user, target)
        scan.volume.name = save_array(volume, scan.volume.field.generate_filename(scan, f"{uuid.uuid4().hex}.npy"))
        written.append(scan.volume.name)
        del volume
        files = _store_originals(read.source, written, lambda f: on_fraction(0.6 + 0.4 * f))
        label_name = None
        if reference is not None:
            label_name = save_array(reference[0], ReferenceLabelMap.labels.field.generate_filename(
                None, f"{uuid.uuid4().hex}.npy"))
            written.append(label_name)
        with transaction.atomic():
            Pool.objects.select_for_update().filter(pk=pool.pk).first()  # serialise imports into a pool
            _check_not_duplicate(read, user)
            scan.save()
            ScanFile.objects.bulk_create([ScanFile(scan=scan, **f) for f in files])
            if reference is not None:
                ReferenceLabelMap.objects.create(scan=scan, label_set=label_set, labels=label_name,
                                                 labelled_slices=reference[1], source_name=labels.name)
    except BaseException:
        for name in written:
            default_storage.delete(name)
        raise
    return scan


def _scan_row(pool: Pool, read: ReadSource, user, target) -> Scan:
    ids = read.source.identifiers
    return Scan(
        pool=pool, name=read.source.scan_name[:255], original_geometry=read.geometry.to_dict(),
        geometry=target.to_dict(), patient_id=ids.get("PatientID", "")[:64],
        study_uid=ids.get("StudyInstanceUID", "")[:64], series_uid=read.source.series_uid[:64],
        modality=ids.get("Modality", "CT" if read.source.source_format == "dicom" else "")[:16],
        manufacturer=ids.get("Manufacturer", "")[:128], series_description=ids.get("SeriesDescription", "")[:255],
        source_format=read.source.source_format, content_hash=read.content_hash, imported_by=user,
        import_log=f"imported from {read.source.name}; original grid {read.geometry.shape} (z, y, x) "
                   f"at {tuple(round(s, 4) for s in read.geometry.spacing)} mm; dtype {read.hu.dtype}",
    )


def _store_originals(source: Source, written: list[str], on_fraction) -> list[dict]:
    folder = uuid.uuid4().hex[:12]
    max_length = ScanFile._meta.get_field("file").max_length  # storage truncates long DICOM names to fit
    rows = []
    for k, (path, shown) in enumerate(source.files):
        target = ScanFile.file.field.generate_filename(None, f"{folder}/{_safe_name(Path(shown).name)}")
        with open(path, "rb") as fh:
            stored = default_storage.save(target, File(fh, name=Path(target).name), max_length=max_length)
        written.append(stored)
        rows.append({"file": stored, "original_name": shown[-255:], "size": path.stat().st_size})
        on_fraction((k + 1) / len(source.files))
    return rows


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return cleaned or "file"


def _checked_slices(name: str, slices: list[int], depth: int) -> list[int]:
    bad = [s for s in slices if not 0 <= int(s) < depth]
    if bad:
        raise MyoLabelError(f"{name}: labelled slices {bad[:10]} are outside the working grid's 0-{depth - 1}")
    return sorted({int(s) for s in slices})

