"""PACS API (docs/pacs.md), under /api/pacs/.

Who may do what: site administrators (superusers) configure archives; they and the admins of
projects search archives and import series into the pools of the projects they administer.
Leads (and admins) may list the archives, to choose where a segmentation is sent
(``backend.acquisition.outputs.apis_pacs``). The password is write-only: no answer holds it.

Errors talking to an archive are 502 with the reason's code (``pacs_unreachable``,
``pacs_refused``, ``pacs_not_dicomweb``, ``pacs_error``); configuring an archive that does not
answer is a 400 with the same codes, and nothing is stored.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.core.errors import ErrorOutput, register_domain_error
from backend.core.ids import IdField
from backend.imaging.apis_imports import ImportJobOutput
from backend.imaging.models import DicomWebArchive
from backend.imaging.pacs.client import PacsError, PacsNotDicomWeb, PacsRefused, PacsUnreachable
from backend.imaging.pacs.secrets import CredentialsUnreadable
from backend.imaging.pacs.selectors import StudyFilters, series_search, studies_search
from backend.imaging.pacs.services import (
    archive_create,
    archive_delete,
    archive_update,
    pacs_import_submit,
)
from backend.projects.access import Role, leads_somewhere, pool_for
from backend.projects.models import LabelSet, Membership

register_domain_error(PacsError, status.HTTP_502_BAD_GATEWAY, "pacs_error")
register_domain_error(PacsUnreachable, status.HTTP_502_BAD_GATEWAY, "pacs_unreachable")
register_domain_error(PacsRefused, status.HTTP_502_BAD_GATEWAY, "pacs_refused")
register_domain_error(PacsNotDicomWeb, status.HTTP_502_BAD_GATEWAY, "pacs_not_dicomweb")
register_domain_error(CredentialsUnreadable, status.HTTP_409_CONFLICT, "credentials_unreadable")

PACS_ERRORS = {status.HTTP_502_BAD_GATEWAY: ErrorOutput}


def require_site_admin(user) -> None:
    if not user.is_superuser:
        raise PermissionDenied("Only site administrators configure PACS archives.")


def require_pacs_searcher(user) -> None:
    """Site administrators and project admins search archives (patient data of the whole hospital)."""
    if not (user.is_superuser or Membership.objects.filter(user=user, role=Role.ADMIN).exists()):
        raise PermissionDenied("Searching a PACS needs the admin role in a project (or a site administrator).")


def archive_for(user, archive_id: int, *, searching: bool = False) -> DicomWebArchive:
    """The archive, for a user who may list archives (a lead somewhere) or search them; 403 / 404."""
    if searching:
        require_pacs_searcher(user)
    elif not leads_somewhere(user):
        raise PermissionDenied("PACS archives are for project leads and administrators.")
    archive = DicomWebArchive.objects.filter(pk=archive_id).first()
    if archive is None:
        raise Http404("No PACS archive matches the given query.")
    return archive


def _validation(exc: DjangoValidationError) -> serializers.ValidationError:
    """A refused configuration: one sentence, with the reason's code (pacs_unreachable...)."""
    return serializers.ValidationError("; ".join(exc.messages), code=getattr(exc, "code", None) or "invalid")


class ArchiveOutput(serializers.ModelSerializer):
    has_password = serializers.SerializerMethodField()

    class Meta:
        model = DicomWebArchive
        fields = ["id", "name", "url", "username", "has_password", "created"]

    def get_has_password(self, archive) -> bool:
        return bool(archive.password_encrypted)


def _http_url(value: str) -> str:
    # Not Django's URLValidator: it refuses host names without a dot, and intranet PACS are
    # often just "pacs01" or a container name.
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise serializers.ValidationError("give the archive's DICOMweb root as an http:// or https:// address, "
                                          "e.g. https://pacs.example.org/dicom-web")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise serializers.ValidationError(f"the address's port is not valid ({exc})") from exc
    return value


class _ArchiveFields(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    url = serializers.CharField(max_length=500, validators=[_http_url],
                               help_text="DICOMweb root, e.g. https://pacs.example.org/dicom-web")
    username = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    password = serializers.CharField(max_length=500, required=False, allow_blank=True, default="",
                                     write_only=True, trim_whitespace=False,
                                     help_text="Stored encrypted; never answered.")


class ArchiveListApi(APIView):
    class InputSerializer(_ArchiveFields):
        class Meta:
            ref_name = "PacsArchiveCreate"

    @extend_schema(responses={200: ArchiveOutput(many=True)})
    def get(self, request):
        if not leads_somewhere(request.user):
            raise PermissionDenied("PACS archives are for project leads and administrators.")
        return Response(ArchiveOutput(DicomWebArchive.objects.all(), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: ArchiveOutput})
    def post(self, request):
        require_site_admin(request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            archive = archive_create(user=request.user, **data.validated_data)
        except DjangoValidationError as exc:
            raise _validation(exc) from exc
        return Response(ArchiveOutput(archive).data, status=status.HTTP_201_CREATED)


class ArchiveDetailApi(APIView):
    class InputSerializer(_ArchiveFields):
        class Meta:
            ref_name = "PacsArchiveUpdate"

    @extend_schema(responses={200: ArchiveOutput})
    def get(self, request, archive_id: int):
        return Response(ArchiveOutput(archive_for(request.user, archive_id)).data)

    @extend_schema(request=InputSerializer(partial=True), responses={200: ArchiveOutput})
    def patch(self, request, archive_id: int):
        require_site_admin(request.user)
        archive = archive_for(request.user, archive_id)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        given = {k: data.validated_data[k] for k in ("name", "url", "username", "password") if k in request.data}
        try:
            archive = archive_update(archive=archive, **given)
        except DjangoValidationError as exc:
            raise _validation(exc) from exc
        return Response(ArchiveOutput(archive).data)

    @extend_schema(responses={204: None})
    def delete(self, request, archive_id: int):
        require_site_admin(request.user)
        archive_delete(archive=archive_for(request.user, archive_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class StudySearchQuery(serializers.Serializer):
    patient_id = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")
    patient_name = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")
    date_from = serializers.DateField(required=False, allow_null=True, default=None, help_text="YYYY-MM-DD")
    date_to = serializers.DateField(required=False, allow_null=True, default=None, help_text="YYYY-MM-DD")
    modality = serializers.RegexField(r"^[A-Za-z]{0,16}$", required=False, allow_blank=True, default="",
                                      error_messages={"invalid": "a modality is letters only, e.g. CT"})
    description = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")

    def validate(self, attrs):
        if attrs["date_from"] and attrs["date_to"] and attrs["date_from"] > attrs["date_to"]:
            raise serializers.ValidationError({"date_to": "the end of the date range is before its start"})
        return attrs


class StudyOutput(serializers.Serializer):
    study_uid = serializers.CharField()
    patient_id = serializers.CharField()
    patient_name = serializers.CharField()
    study_date = serializers.CharField(help_text="YYYYMMDD as the archive keeps it")
    description = serializers.CharField()
    accession_number = serializers.CharField()
    modalities = serializers.ListField(child=serializers.CharField())
    n_series = serializers.IntegerField(allow_null=True)
    n_instances = serializers.IntegerField(allow_null=True)


class StudySearchApi(APIView):
    """QIDO-RS: the studies of an archive by patient, date, modality and description (at most 100)."""

    @extend_schema(parameters=[StudySearchQuery], responses={200: StudyOutput(many=True), **PACS_ERRORS})
    def get(self, request, archive_id: int):
        archive = archive_for(request.user, archive_id, searching=True)
        query = StudySearchQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = studies_search(archive=archive, filters=StudyFilters(**query.validated_data))
        return Response(StudyOutput(rows, many=True).data)


class SeriesSearchQuery(serializers.Serializer):
    study_uid = serializers.RegexField(r"^[0-9.]{1,64}$", error_messages={
        "invalid": "a study UID is digits and dots, at most 64 characters"})
    modality = serializers.RegexField(r"^[A-Za-z]{0,16}$", required=False, allow_blank=True, default="",
                                      error_messages={"invalid": "a modality is letters only, e.g. CT"})
    description = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")


class SeriesOutput(serializers.Serializer):
    series_uid = serializers.CharField()
    study_uid = serializers.CharField()
    modality = serializers.CharField()
    description = serializers.CharField()
    number = serializers.IntegerField(allow_null=True)
    body_part = serializers.CharField()
    n_instances = serializers.IntegerField(allow_null=True)
    imported = serializers.BooleanField(help_text="already imported into this installation")




class SeriesSearchApi(APIView):
    """QIDO-RS: the series of one study, with whether each was imported already."""

    @extend_schema(parameters=[SeriesSearchQuery], responses={200: SeriesOutput(many=True), **PACS_ERRORS})
    def get(self, request, archive_id: int):
        archive = archive_for(request.user, archive_id, searching=True)
        query = SeriesSearchQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = series_search(archive=archive, **query.validated_data)
        return Response(SeriesOutput(rows, many=True).data)


class PacsImportApi(APIView):
    """WADO-RS: import series of one study into a pool, as a background job followed like an upload
    (``GET /api/imports/<id>/`` and the websocket's "import" events)."""

    class InputSerializer(serializers.Serializer):
        pool = IdField()
        study_uid = serializers.RegexField(r"^[0-9.]{1,64}$", error_messages={
            "invalid": "a study UID is digits and dots, at most 64 characters"})
        series_uids = serializers.ListField(child=serializers.RegexField(r"^[0-9.]{1,64}$", error_messages={
            "invalid": "a series UID is digits and dots, at most 64 characters"}), allow_empty=False, max_length=50)
        label_set = IdField(required=False, allow_null=True)

        class Meta:
            ref_name = "PacsImport"

    @extend_schema(request=InputSerializer, responses={202: ImportJobOutput, 503: ErrorOutput})
    def post(self, request, archive_id: int):
        archive = archive_for(request.user, archive_id, searching=True)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        pool = pool_for(request.user, values["pool"], min_role=Role.ADMIN)
        label_set = None
        if values.get("label_set"):
            label_set = LabelSet.objects.filter(pk=values["label_set"]).first()
            if label_set is None:
                raise serializers.ValidationError({"label_set": f"no label set with id {values['label_set']}"})
        try:
            with transaction.atomic():
                job = pacs_import_submit(archive=archive, pool=pool, user=request.user, label_set=label_set,
                                         study_uid=values["study_uid"], series_uids=values["series_uids"])
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"detail": exc.messages}) from exc
        job.refresh_from_db()  # an eager run (embedded tests) has finished it already
        return Response(ImportJobOutput(job).data, status=status.HTTP_202_ACCEPTED)
