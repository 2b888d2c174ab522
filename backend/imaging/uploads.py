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
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.move import file_move_safe
from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.imaging.importing import is_companion
from backend.imaging.models import ImportJob
from backend.imaging.services import (
    MANIFEST,
    ImportInput,
    import_job_create,
    import_job_submit,
    staging_dir_new,
)
from backend.imaging.services_uploads import uploads_expire_stale
from backend.projects.access import Role, pool_for
from backend.projects.models import LabelSet
from mltasks.io.files import READ_SUFFIXES, suffix_of

_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_READ = 1 << 20


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the upload is larger than this server accepts"


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT


class ImportJobOutput(serializers.ModelSerializer):
    class Meta:
        model = ImportJob
        fields = ["id", "pool", "status", "percent", "results", "label_set", "created", "finished"]


# --- staging helpers ------------------------------------------------------------------------


def _files_dir(job: ImportJob) -> Path:
    return Path(job.staging_dir) / "files"


def _clean_name(raw: str) -> str:
    """A relative upload name, refused when absolute or climbing out ('..')."""
    raw = raw.replace("\\", "/")
    parts = PurePosixPath(raw).parts
    bad = not parts or raw.startswith("/") or ".." in parts or "\x00" in raw or len(raw) > 500
    if bad:
        raise serializers.ValidationError({"name": f"{raw!r} is not a valid relative file name"})
    return "/".join(parts)


def upload_inputs(files_dir: Path, *, labels: str | None = None) -> tuple[list[ImportInput], ImportInput | None]:
    """Group the files of an upload into inputs (see module docstring) and the label map."""
    every = sorted(p for p in files_dir.rglob("*") if p.is_file())
    label_input = None
    if labels:
        path = files_dir / _clean_name(labels)
        if path not in every:
            raise ValidationError(f"labels: no uploaded file is named {labels!r}")
        every.remove(path)
        label_input = ImportInput(path, labels)
    inputs, loose = [], []
    for path in every:
        suffix = suffix_of(path)
        if suffix == ".zip" or (suffix in READ_SUFFIXES and suffix != ".raw"):
            inputs.append(ImportInput(path, path.relative_to(files_dir).as_posix()))
        elif not is_companion(path, every):
            loose.append(path)
    if len(loose) == 1:
        inputs.append(ImportInput(loose[0], loose[0].relative_to(files_dir).as_posix()))
    elif loose:
        inputs.append(_loose_input(files_dir, loose))
    return inputs, label_input


def _loose_input(files_dir: Path, loose: list[Path]) -> ImportInput:
    # Loose files go to a folder of their own so that zips and images beside them stay out.
    folder = files_dir.parent / "loose"
    for path in loose:
        target = folder / path.relative_to(files_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    tops = {p.relative_to(files_dir).parts[0] for p in loose}
    single_top = len(tops) == 1 and all(len(p.relative_to(files_dir).parts) > 1 for p in loose)
    name = tops.pop() if single_top else f"{len(loose)} files"
    return ImportInput(folder / name if single_top else folder, name)


def _received(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _declared_total(job: ImportJob, name: str) -> int | None:
    path = Path(job.staging_dir) / "totals" / name
    return int(path.read_text()) if path.exists() else None


def _all_declared(job: ImportJob) -> dict[str, int]:
    root = Path(job.staging_dir) / "totals"
    return {p.relative_to(root).as_posix(): int(p.read_text()) for p in root.rglob("*") if p.is_file()}


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


def _create(user, data: dict, inputs, labels, staging: Path) -> ImportJob:
    try:
        with transaction.atomic():
            return import_job_create(
                pool=data["pool_obj"], user=user, inputs=inputs, staging_dir=staging,
                label_set=_label_set(user, data.get("label_set")), labels=labels,
                labelled_slices=data.get("labelled_slices"), series_uid=data.get("series_uid") or None,
            )
    except ValidationError as exc:
        raise serializers.ValidationError({"detail": exc.messages}) from exc


class _JobOptions(serializers.Serializer):
    pool = serializers.IntegerField()
    label_set = serializers.IntegerField(required=False, allow_null=True)
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


    @extend_schema(request=InputSerializer, responses={202: ImportJobOutput})
    def post(self, request):
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.MYOLABEL_MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(f"the upload has {length} bytes; the limit is "
                                  f"{settings.MYOLABEL_MAX_UPLOAD_BYTES} (MYOLABEL_MAX_UPLOAD_BYTES)")
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
            inputs, labels = upload_inputs(files_dir, labels=label_name)
            job = _create(request.user, values, inputs, labels, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Response(ImportJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


def _store_upload(uploaded, files_dir: Path) -> str:
    name = _clean_name(Path(uploaded.name).name)
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
        name = _clean_name(name)
        out = {"name": name, "received": _received(_files_dir(job) / name), "total": _declared_total(job, name)}
        return Response(self.OutputSerializer(out).data)

    @extend_schema(
        request={"application/octet-stream": bytes},
        parameters=[OpenApiParameter("Content-Range", location=OpenApiParameter.HEADER, required=True,
                                     description="bytes START-END/TOTAL (END inclusive)")],
        responses={200: OutputSerializer},
    )
    def put(self, request, job_id: int, name: str):
        job = job_for(request.user, job_id, open_upload=True)
        name = _clean_name(name)
        start, end, total = _content_range(request.META.get("HTTP_CONTENT_RANGE", ""))
        self._check_total(job, name, total)
        target = _files_dir(job) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "ab") as out:
            fcntl.flock(out, fcntl.LOCK_EX)  # one writer per file: chunks of a file are sequential
            received = out.tell()
            if start != received:
                raise Conflict(f"{name}: expected the chunk starting at byte {received}, got {start}; "
                               "resume from there")
            _append(request, out, end - start + 1, name)
        out = {"name": name, "received": _received(target), "total": total}
        return Response(self.OutputSerializer(out).data)

    def _check_total(self, job: ImportJob, name: str, total: int) -> None:
        declared = _all_declared(job)
        if name in declared:
            if declared[name] != total:
                raise serializers.ValidationError(
                    {"Content-Range": f"{name}: total {total} differs from the {declared[name]} declared before"})
            return
        if sum(declared.values()) + total > settings.MYOLABEL_MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(f"{name}: the upload would exceed {settings.MYOLABEL_MAX_UPLOAD_BYTES} bytes "
                                  "(MYOLABEL_MAX_UPLOAD_BYTES); import the files in several jobs")
        path = Path(job.staging_dir) / "totals" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(total))


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


    @extend_schema(request=InputSerializer, responses={202: ImportJobOutput})
    def post(self, request, job_id: int):
        job = job_for(request.user, job_id, open_upload=True)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        incomplete = [f"{n} ({_received(_files_dir(job) / n)} of {t} bytes)"
                      for n, t in _all_declared(job).items() if _received(_files_dir(job) / n) != t]
        if incomplete:
            raise Conflict(f"files not fully uploaded: {', '.join(incomplete)}")
        try:
            inputs, labels = upload_inputs(_files_dir(job), labels=data.validated_data.get("labels") or None)
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
