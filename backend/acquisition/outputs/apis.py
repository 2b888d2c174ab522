"""Model registry, on-demand segmentation and the downloads (NIfTI, DICOM-SEG, CSV, checkpoint)."""

from __future__ import annotations

from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from backend.acquisition.api_base import (
    ATTACHMENT,
    LEAD,
    AcquisitionApi,
    DownloadApi,
    QueuePlaceOutput,
    project_of,
    segmentation_of,
    version_of,
)
from backend.acquisition.errors import StepConflict
from backend.acquisition.gpu_queue import segmentation_queue
from backend.acquisition.models import ModelVersion, Segmentation
from backend.acquisition.outputs.export import (
    dicom_seg_bytes,
    report_csv,
    training_set_zip,
)
from backend.acquisition.outputs.segmentation import segmentation_nifti, segmentation_request
from backend.acquisition.outputs.selectors import model_metrics
from backend.acquisition.selectors import current_model
from backend.core.ids import IdField
from backend.projects.access import scan_for


class ModelVersionOutput(serializers.ModelSerializer):
    step_number = serializers.IntegerField(source="step.number", allow_null=True, default=None)
    is_current = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField(
        help_text="accuracy on the evaluation set; every figure has a status (ok, or unavailable with a reason)")

    class Meta:
        model = ModelVersion
        fields = ["id", "number", "step", "step_number", "config", "training", "metrics", "calibration",
                  "origin", "created", "is_current"]

    def get_is_current(self, version) -> bool:
        return self.context.get("current_id") == version.id

    def get_metrics(self, version) -> dict:
        return model_metrics(version)


class ModelListApi(AcquisitionApi):
    @extend_schema(responses={200: ModelVersionOutput(many=True)})
    def get(self, request, project_id: int):
        project = project_of(request, project_id)
        current = current_model(project)
        versions = ModelVersion.objects.filter(project=project).select_related("step").order_by("number")
        return Response(ModelVersionOutput(versions, many=True, context={"current_id": current and current.id}).data)


class ModelDetailApi(AcquisitionApi):
    @extend_schema(responses={200: ModelVersionOutput})
    def get(self, request, project_id: int, version_id: int):
        version = version_of(request, project_id, version_id)
        current = current_model(version.project)
        return Response(ModelVersionOutput(version, context={"current_id": current and current.id}).data)


class ModelCheckpointApi(DownloadApi):
    """The checkpoint file (torch, loadable with weights_only=True; mltasks.checkpoint format)."""

    @extend_schema(parameters=[ATTACHMENT], responses={(200, "application/octet-stream"): OpenApiResponse(
        OpenApiTypes.BINARY, description="project-{p}-model-{number}.pt")})
    def get(self, request, project_id: int, version_id: int):
        version = version_of(request, project_id, version_id, LEAD)
        return FileResponse(version.checkpoint.open("rb"), as_attachment=True, content_type="application/octet-stream",
                            filename=f"project-{project_id}-model-{version.number}.pt")


class SegmentationOutput(serializers.ModelSerializer):
    queue = serializers.SerializerMethodField()

    class Meta:
        model = Segmentation
        fields = ["id", "scan", "model_version", "status", "percent", "eta_seconds", "queue", "report", "error",
                  "created", "started", "finished"]

    @extend_schema_field(QueuePlaceOutput(allow_null=True))
    def get_queue(self, seg) -> dict | None:
        return segmentation_queue(seg)


class SegmentationListApi(AcquisitionApi):
    @extend_schema_serializer(component_name="SegmentationRequestInput")
    class InputSerializer(serializers.Serializer):
        scan_id = IdField()
        model_version_id = IdField(required=False, allow_null=True)

    @extend_schema(responses={200: SegmentationOutput(many=True)})
    def get(self, request, project_id: int):
        project = project_of(request, project_id)
        return Response(SegmentationOutput(project.segmentations.order_by("-id"), many=True).data)

    @extend_schema(request=InputSerializer, responses={202: SegmentationOutput})
    def post(self, request, project_id: int):
        project = project_of(request, project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        scan = scan_for(request.user, data.validated_data["scan_id"])
        version = None
        if data.validated_data.get("model_version_id"):
            version = get_object_or_404(ModelVersion, pk=data.validated_data["model_version_id"], project=project)
        seg = segmentation_request(project=project, scan=scan, user=request.user, model_version=version)
        return Response(SegmentationOutput(seg).data, status=status.HTTP_202_ACCEPTED)


class SegmentationDetailApi(AcquisitionApi):
    @extend_schema(responses={200: SegmentationOutput})
    def get(self, request, project_id: int, segmentation_id: int):
        return Response(SegmentationOutput(segmentation_of(request, project_id, segmentation_id)).data)


def _finished(seg: Segmentation) -> Segmentation:
    if seg.status != Segmentation.Status.DONE:
        raise StepConflict(f"segmentation {seg.id} is {seg.status}; downloads exist once it is done",
                           code="not_done")
    return seg


def _download(content: bytes | str, filename: str, content_type: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class GridQuery(serializers.Serializer):
    grid = serializers.ChoiceField(
        choices=["original", "working"], default="original",
        help_text="NIfTI downloads: the CT's own grid as imported (default) or the working grid "
                  "(the scan as stored and shown).",
        error_messages={"invalid_choice": '"{input}" is not a grid: use original (the CT as imported) '
                                          "or working (the working grid, as the scan is shown)."})


_FILES = "labels.nii.gz, uncertainty.nii.gz (gzip NIfTI), seg.dcm (DICOM-SEG) or report.csv"


class SegmentationFileApi(DownloadApi):
    """``labels.nii.gz``, ``uncertainty.nii.gz``, ``seg.dcm`` (DICOM-SEG) or ``report.csv``."""

    KINDS = {"labels.nii.gz", "uncertainty.nii.gz", "seg.dcm", "report.csv"}

    @extend_schema(operation_id="projects_segmentations_file", parameters=[
        GridQuery, ATTACHMENT, OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=sorted(KINDS))],
        responses={(200, "application/gzip"): OpenApiResponse(OpenApiTypes.BINARY, description=_FILES),
                   (200, "application/dicom"): OpenApiResponse(OpenApiTypes.BINARY, description=_FILES),
                   (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description=_FILES)})
    def get(self, request, project_id: int, segmentation_id: int, kind: str):
        seg = _finished(segmentation_of(request, project_id, segmentation_id))
        stem = f"segmentation-{seg.id}-scan-{seg.scan_id}"
        if kind == "report.csv":
            return _download(report_csv(seg.report), f"{stem}-report.csv", "text/csv")
        if kind == "seg.dcm":
            return _download(dicom_seg_bytes(seg), f"{stem}.dcm", "application/dicom")
        if kind in ("labels.nii.gz", "uncertainty.nii.gz"):
            query = GridQuery(data=request.query_params)
            query.is_valid(raise_exception=True)
            content = segmentation_nifti(seg, labels=kind == "labels.nii.gz",
                                         original_grid=query.validated_data["grid"] == "original")
            return _download(content, f"{stem}-{kind}", "application/gzip")
        raise NotFound(f"unknown file {kind!r}; one of {sorted(self.KINDS)}")


class TrainingSetExportApi(DownloadApi):
    """Zip of NIfTI label maps (255 = unlabelled) and provenance maps (0 none, 1 predicted, 2 answered)."""

    @extend_schema(parameters=[ATTACHMENT], responses={(200, "application/zip"): OpenApiResponse(
        OpenApiTypes.BINARY, description="project-{p}-training-set.zip")})
    def get(self, request, project_id: int):
        project = project_of(request, project_id, LEAD)
        response = HttpResponse(training_set_zip(project), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="project-{project.id}-training-set.zip"'
        return response
