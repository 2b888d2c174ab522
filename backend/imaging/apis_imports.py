"""Upload API of CT imports: one multipart request, or a chunked upload for large files.

Chunked upload (what the browser page uses; never holds a file in memory):

1. ``POST /api/imports/uploads/`` {pool, label_set?, series_uid?} -> 201 {id, ...}
2. ``PUT /api/imports/<id>/files/<name>`` with ``Content-Range: bytes START-END/TOTAL``
   and the raw bytes as body, in order; START must equal the bytes received so far
   (``GET`` on the same URL says how many, to resume). ``name`` may hold folders
   ("series1/IM0001").
3. ``POST /api/imports/<id>/complete/`` {labels?: uploaded name of the reference
   label map, labelled_slices?} -> 202; the import is queued on the ``cpu`` worker.

Progress then arrives on /ws/events/ as {"type": "import", "job", "percent",
"file", "status"}; ``GET /api/imports/<id>/`` gives the job with its results.
Uploaded files are grouped into inputs: every zip and every image file (with
the .raw of a .mhd) is one input, and the remaining (DICOM) files form one more.

Announced sizes count against the uploader's quota (413 ``upload_quota``) and the
free disk space (507 ``insufficient_storage``) before any byte is kept
(``services_uploads``). When the task queue is down, completing answers 503
``queue_unavailable``: the job is failed with the reason, its files stay, and
``POST /api/imports/<id>/retry/`` queues it again.
"""

from __future__ import annotations

import fcntl
import re
import shutil
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.move import file_move_safe
from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.core.errors import ErrorOutput, register_domain_error
from backend.core.ids import IdField
from backend.imaging import staging as staged
from backend.imaging.models import ImportJob
from backend.imaging.services import (
    MANIFEST,
    NotRetryable,
    QueueUnavailable,
    import_job_create,
    import_job_retry,
    import_job_submit,
    staging_dir_new,
)
from backend.imaging.services_uploads import (
    StorageFull,
    UploadQuotaExceeded,
    UploadTooLarge,
    upload_check,
    upload_declare_file,
    upload_reserve,
    uploads_expire_stale,
)
from backend.imaging.staging import upload_inputs
from backend.projects.access import Role, leads_somewhere, pool_for
from backend.projects.models import LabelSet

register_domain_error(UploadQuotaExceeded, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "upload_quota")
register_domain_error(UploadTooLarge, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large")
register_domain_error(StorageFull, status.HTTP_507_INSUFFICIENT_STORAGE, "insufficient_storage")
register_domain_error(QueueUnavailable, status.HTTP_503_SERVICE_UNAVAILABLE, "queue_unavailable")
register_domain_error(NotRetryable, status.HTTP_409_CONFLICT, "not_retryable")

_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
# Besides the errors every operation documents (backend.core.schema).
_QUEUE_ERRORS = {status.HTTP_503_SERVICE_UNAVAILABLE: ErrorOutput}
_DISK_ERRORS = {status.HTTP_507_INSUFFICIENT_STORAGE: ErrorOutput}
_READ = 1 << 20


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the upload is larger than this server accepts"


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT


class ImportJobOutput(serializers.ModelSerializer):
    class Meta:
        model = ImportJob
        fields = ["id", "pool", "status", "percent", "results", "label_set", "awaiting_retry", "created", "finished"]


def job_for(user, job_id: int, *, open_upload: bool = False) -> ImportJob:
    """The job if ``user`` created it (or is a superuser) and may still import into its pool; else 404.

    ``open_upload`` also requires that the upload is not completed yet (409 otherwise).
    """
    job = ImportJob.objects.select_related("pool").filter(pk=job_id).first()
    if job is None or not (user.is_superuser or job.created_by_id == user.id):
        raise Http404("No import job matches the given query.")
    pool_for(user, job.pool_id, min_role=Role.LEAD)
    if open_upload and (Path(job.staging_dir) / MANIFEST).exists():
        raise Conflict("this upload is completed; start a new upload to add files")
    if open_upload and not Path(job.staging_dir).is_dir():
        raise Conflict("this upload has ended; start a new upload")
    return job


def _label_set(user, label_set_id: int | None) -> LabelSet | None:
    if label_set_id is None:
        return None
    found = LabelSet.objects.filter(pk=label_set_id).first()
    if found is None:
        raise serializers.ValidationError({"label_set": f"no label set with id {label_set_id}"})
    return found


def _create(user, data: dict, inputs, labels, staging: Path, nbytes: int) -> ImportJob:
    """The job of a multipart upload of ``nbytes``, queued when this returns (QueueUnavailable if not)."""
    try:
        with transaction.atomic():
            upload_reserve(user_id=user.id, nbytes=nbytes, what="the upload")
            job = import_job_create(
                pool=data["pool_obj"], user=user, inputs=inputs, staging_dir=staging,
                label_set=_label_set(user, data.get("label_set")), labels=labels,
                labelled_slices=data.get("labelled_slices"), series_uid=data.get("series_uid") or None,
            )
            ImportJob.objects.filter(pk=job.pk).update(declared_bytes=nbytes)
            return job
    except ValidationError as exc:
        raise serializers.ValidationError({"detail": exc.messages}) from exc


class _JobOptions(serializers.Serializer):
    pool = IdField()
    label_set = IdField(required=False, allow_null=True)
    series_uid = serializers.CharField(required=False, allow_blank=True, max_length=64)


# --- views ----------------------------------------------------------------------------------


class ImportCreateApi(APIView):
    """Import files sent in one multipart request (Django streams large files to disk)."""

    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(_JobOptions):
        files = serializers.ListField(child=serializers.FileField(), allow_empty=False)
        labels = serializers.FileField(required=False)
        labelled_slices = serializers.ListField(child=serializers.IntegerField(min_value=0), required=False)

        class Meta:
            ref_name = "ImportCreate"


    @extend_schema(request=InputSerializer, responses={202: ImportJobOutput, **_QUEUE_ERRORS, **_DISK_ERRORS})
    def post(self, request):
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.MYOLABEL_MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(f"the upload has {length} bytes; the limit is "
                                  f"{settings.MYOLABEL_MAX_UPLOAD_BYTES} (MYOLABEL_MAX_UPLOAD_BYTES)")
        # Before the body is read, so an upload over the quota or the free space stores nothing; only
        # for users who may import at all, so the free space is told to nobody else.
        if not leads_somewhere(request.user):
            raise PermissionDenied("Importing needs the lead role or higher in a project using the pool.")
        upload_check(user_id=request.user.id, nbytes=length, what="the upload")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        values["pool_obj"] = pool_for(request.user, values["pool"], min_role=Role.LEAD)
        staging = staging_dir_new()
        try:
            files_dir = staging / "files"
            for uploaded in values["files"]:
                _store_upload(uploaded, files_dir)
            label_name = _store_upload(values["labels"], files_dir) if "labels" in values else None
            # Without a Content-Length (chunked transfer) the stored bytes are what counts.
            stored = sum(p.stat().st_size for p in files_dir.rglob("*") if p.is_file())
            inputs, labels = upload_inputs(files_dir, labels=label_name)
            job = _create(request.user, values, inputs, labels, staging, max(length, stored))
        except QueueUnavailable:
            raise  # the job is failed with the reason, and its files stay for a retry
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Response(ImportJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


def _store_upload(uploaded, files_dir: Path) -> str:
    name = staged.clean_name(Path(uploaded.name).name)
    target = files_dir / name
    if target.exists():
        raise serializers.ValidationError({"files": f"two files are named {name!r}; rename one"})
    target.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(uploaded, "temporary_file_path"):
        file_move_safe(uploaded.temporary_file_path(), str(target))
    else:
        with open(target, "wb") as out:
            for chunk in uploaded.chunks():
                out.write(chunk)
    return name


class ImportUploadStartApi(APIView):
    """Start a chunked upload: an import job waiting for its files."""

    class InputSerializer(_JobOptions):
        class Meta:
            ref_name = "ImportUploadStart"

    @extend_schema(request=InputSerializer, responses={201: ImportJobOutput})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pool = pool_for(request.user, data.validated_data["pool"], min_role=Role.LEAD)
        label_set = _label_set(request.user, data.validated_data.get("label_set"))
        uploads_expire_stale()  # each new upload sweeps the abandoned ones (no scheduler needed)
        staging = staging_dir_new()
        (staging / "files").mkdir()
        (staging / "options").write_text(data.validated_data.get("series_uid") or "")
        job = ImportJob.objects.create(pool=pool, created_by=request.user, staging_dir=str(staging),
                                       label_set=label_set)
        return Response(ImportJobOutput(job).data, status=status.HTTP_201_CREATED)


class ImportChunkApi(APIView):
    """Append one chunk to an uploaded file (``Content-Range: bytes START-END/TOTAL``)."""

    class OutputSerializer(serializers.Serializer):
        name = serializers.CharField()
        received = serializers.IntegerField()
        total = serializers.IntegerField(allow_null=True)

        class Meta:
            ref_name = "ImportChunk"


    @extend_schema(responses={200: OutputSerializer})
    def get(self, request, job_id: int, name: str):
        job = job_for(request.user, job_id)
        name = staged.clean_name(name)
        out = {"name": name, "received": staged.received(staged.files_dir(job) / name),
               "total": staged.declared_total(job, name)}
        return Response(self.OutputSerializer(out).data)

    @extend_schema(
        request={"application/octet-stream": bytes},
        parameters=[OpenApiParameter("Content-Range", location=OpenApiParameter.HEADER, required=True,
                                     description="bytes START-END/TOTAL (END inclusive)")],
        responses={200: OutputSerializer, **_DISK_ERRORS},
    )
    def put(self, request, job_id: int, name: str):
        job = job_for(request.user, job_id, open_upload=True)
        name = staged.clean_name(name)
        start, end, total = _content_range(request.META.get("HTTP_CONTENT_RANGE", ""))
        upload_declare_file(job=job, name=name, total=total)
        target = staged.files_dir(job) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "ab") as out:
            fcntl.flock(out, fcntl.LOCK_EX)  # one writer per file: chunks of a file are sequential
            at = out.tell()
            if start != at:
                raise Conflict(f"{name}: expected the chunk starting at byte {at}, got {start}; "
                               "resume from there")
            _append(request, out, end - start + 1, name)
        out = {"name": name, "received": staged.received(target), "total": total}
        return Response(self.OutputSerializer(out).data)


def _content_range(header: str) -> tuple[int, int, int]:
    match = _RANGE.match(header.strip())
    if match is None:
        raise serializers.ValidationError({"Content-Range": "send 'Content-Range: bytes START-END/TOTAL'"})
    start, end, total = (int(v) for v in match.groups())
    if not start <= end < total:
        raise serializers.ValidationError({"Content-Range": f"bad range {start}-{end}/{total}"})
    if end - start + 1 > settings.MYOLABEL_MAX_CHUNK_BYTES:
        raise PayloadTooLarge(f"chunks may hold at most {settings.MYOLABEL_MAX_CHUNK_BYTES} bytes "
                              "(MYOLABEL_MAX_CHUNK_BYTES)")
    return start, end, total


def _append(request, out, expected: int, name: str) -> None:
    """Stream the request body onto ``out``; roll back a chunk whose length is not ``expected``."""
    start = out.tell()
    written = 0
    stream = request.stream
    while stream is not None and written <= expected:
        block = stream.read(min(_READ, expected + 1 - written))
        if not block:
            break
        out.write(block)
        written += len(block)
    if written != expected:
        out.truncate(start)
        raise serializers.ValidationError(
            {"Content-Range": f"{name}: the body holds {written} bytes but the range announces {expected}"})


class ImportCompleteApi(APIView):
    """Close a chunked upload and queue its import."""

    class InputSerializer(serializers.Serializer):
        labels = serializers.CharField(required=False, allow_blank=True)
        labelled_slices = serializers.ListField(child=serializers.IntegerField(min_value=0), required=False)

        class Meta:
            ref_name = "ImportComplete"


    @extend_schema(request=InputSerializer, responses={202: ImportJobOutput, **_QUEUE_ERRORS})
    def post(self, request, job_id: int):
        job = job_for(request.user, job_id, open_upload=True)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        folder = staged.files_dir(job)
        incomplete = [f"{n} ({staged.received(folder / n)} of {t} bytes)"
                      for n, t in staged.all_declared(job).items() if staged.received(folder / n) != t]
        if incomplete:
            raise Conflict(f"files not fully uploaded: {', '.join(incomplete)}")
        try:
            inputs, labels = upload_inputs(folder, labels=data.validated_data.get("labels") or None)
            series_uid = (Path(job.staging_dir) / "options").read_text() or None
            with transaction.atomic():
                job = import_job_submit(job=job, inputs=inputs, labels=labels, series_uid=series_uid,
                                        labelled_slices=data.validated_data.get("labelled_slices"))
        except ValidationError as exc:
            raise serializers.ValidationError({"detail": exc.messages}) from exc
        return Response(ImportJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class ImportJobApi(APIView):
    """An import job with its per-file results; DELETE abandons an upload not yet completed."""

    @extend_schema(responses={200: ImportJobOutput})
    def get(self, request, job_id: int):
        return Response(ImportJobOutput(job_for(request.user, job_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, job_id: int):
        job = job_for(request.user, job_id, open_upload=True)
        shutil.rmtree(job.staging_dir, ignore_errors=True)
        job.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class ImportRetryApi(APIView):
    """Queue again an import that failed because the task queue was down (its files were kept)."""

    @extend_schema(request=None, responses={202: ImportJobOutput, **_QUEUE_ERRORS})
    def post(self, request, job_id: int):
        job = import_job_retry(job_for(request.user, job_id))
        return Response(ImportJobOutput(job).data, status=status.HTTP_202_ACCEPTED)
