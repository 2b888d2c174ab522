"""Biomechanics downloads of a finished segmentation (meshes, the atrophy and fat report, 3D Slicer's
.seg.nrrd) and the import of a .seg.nrrd as a scan's reference labels (docs/biomechanics.md)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from backend.acquisition.api_base import (
    LEAD,
    AcquisitionApi,
    DownloadApi,
    project_of,
    segmentation_of,
)
from backend.acquisition.errors import StepConflict
from backend.acquisition.models import Segmentation
from backend.acquisition.outputs.meshes import (
    DEFAULT_MAX_TRIANGLES,
    segmentation_meshes_zip,
    segmentation_view_meshes,
)
from backend.acquisition.outputs.report import fat_range, muscle_report_csv, muscle_report_html
from backend.acquisition.outputs.slicer import (
    project_scan,
    reference_import_seg_nrrd,
    segmentation_seg_nrrd,
)
from backend.core.ids import IdField


def _finished(request, project_id: int, segmentation_id: int) -> Segmentation:
    seg = segmentation_of(request, project_id, segmentation_id)
    if seg.status != Segmentation.Status.DONE:
        raise StepConflict(f"segmentation {seg.id} is {seg.status}; its outputs exist once it is done",
                           code="not_done")
    return seg


def _attachment(content: bytes | str, filename: str, content_type: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _stem(seg: Segmentation) -> str:
    return f"segmentation-{seg.id}-scan-{seg.scan_id}"


class MeshQuery(serializers.Serializer):
    space = serializers.ChoiceField(
        choices=["LPS", "RAS"], default="LPS",
        help_text="patient coordinates of the vertices, in mm: LPS (DICOM, ITK, 3D Slicer's files) or RAS",
        error_messages={"invalid_choice": '"{input}" is not a coordinate system: use LPS or RAS.'})
    max_triangles = serializers.IntegerField(
        default=DEFAULT_MAX_TRIANGLES, min_value=0, max_value=10_000_000,
        help_text=f"per structure, decimated towards this many where the mesh stays closed "
                  f"(default {DEFAULT_MAX_TRIANGLES}); 0: full resolution")


class SegmentationMeshesZipApi(DownloadApi):
    """A zip: ``NNN_<name>.stl`` and ``.obj`` per structure (closed, smoothed, patient mm), ``manifest.json``
    and ``manifest.csv`` (names, colours, voxel and mesh volumes, watertightness)."""

    @extend_schema(operation_id="projects_segmentations_meshes_zip", parameters=[MeshQuery],
                   responses={(200, "application/zip"): OpenApiResponse(
                       OpenApiTypes.BINARY, description="segmentation-{id}-scan-{scan}-meshes.zip")})
    def get(self, request, project_id: int, segmentation_id: int):
        seg = _finished(request, project_id, segmentation_id)
        query = MeshQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        space = query.validated_data["space"]
        content = segmentation_meshes_zip(seg, space=space, max_triangles=query.validated_data["max_triangles"])
        return _attachment(content, f"{_stem(seg)}-meshes-{space}.zip", "application/zip")


@extend_schema_serializer(component_name="ViewMesh")
class ViewMeshOutput(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.IntegerField()
    colour = serializers.CharField()
    volume_ml = serializers.FloatField(help_text="of the structure's voxels at full resolution")
    triangles = serializers.IntegerField()
    positions = serializers.CharField(help_text="base64 of little-endian float32 (x, y, z) triples, LPS mm")
    indices = serializers.CharField(help_text="base64 of little-endian uint32 vertex indices, three per triangle")


@extend_schema_serializer(component_name="ViewMeshes")
class ViewMeshesOutput(serializers.Serializer):
    space = serializers.CharField()
    units = serializers.CharField()
    stride = serializers.ListField(child=serializers.IntegerField(),
                                   help_text="(z, y, x): the label map was taken every stride voxels")
    structures = ViewMeshOutput(many=True)


class SegmentationViewMeshesApi(AcquisitionApi):
    """The scan viewer's 3D meshes (lighter than the downloads on large scans: see ``stride``)."""

    @extend_schema(operation_id="projects_segmentations_meshes_view", responses={200: ViewMeshesOutput})
    def get(self, request, project_id: int, segmentation_id: int):
        seg = _finished(request, project_id, segmentation_id)
        return Response(ViewMeshesOutput(segmentation_view_meshes(seg)).data)


class FatQuery(serializers.Serializer):
    fat_min = serializers.FloatField(required=False, min_value=-1024, max_value=3071,
                                     help_text="lowest HU counted as fat (default MYOLABEL_FAT_HU_MIN, -190)")
    fat_max = serializers.FloatField(required=False, min_value=-1024, max_value=3071,
                                     help_text="highest HU counted as fat (default MYOLABEL_FAT_HU_MAX, -30)")

    def validate(self, data):
        try:
            data["fat_hu"] = fat_range(data.get("fat_min"), data.get("fat_max"))
        except ValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc
        return data


class SegmentationMuscleReportApi(DownloadApi):
    """``muscle-report.csv`` or ``muscle-report.html``: volume, mean and median HU, fat fraction and
    left/right ratio per structure; the page adds a figure and the patient's other scan when there is one."""

    @extend_schema(operation_id="projects_segmentations_muscle_report_csv", parameters=[FatQuery],
                   responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="one line per structure")})
    def get(self, request, project_id: int, segmentation_id: int):
        return self.answer(request, project_id, segmentation_id, html=False)

    def answer(self, request, project_id: int, segmentation_id: int, *, html: bool):
        seg = _finished(request, project_id, segmentation_id)
        query = FatQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        fat = query.validated_data["fat_hu"]
        if html:
            return _attachment(muscle_report_html(seg, fat), f"{_stem(seg)}-muscle-report.html",
                               "text/html; charset=utf-8")
        return _attachment(muscle_report_csv(seg, fat), f"{_stem(seg)}-muscle-report.csv", "text/csv")


class SegmentationMuscleReportPageApi(SegmentationMuscleReportApi):
    @extend_schema(operation_id="projects_segmentations_muscle_report_html", parameters=[FatQuery],
                   responses={(200, "text/html"): OpenApiResponse(OpenApiTypes.STR, description="a one-page report")})
    def get(self, request, project_id: int, segmentation_id: int):
        return self.answer(request, project_id, segmentation_id, html=True)


class SegmentationSegNrrdApi(DownloadApi):
    """The labels as a 3D Slicer segmentation on the original CT grid (segment names, colours, values)."""

    @extend_schema(operation_id="projects_segmentations_seg_nrrd", responses={
        (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY,
                                                           description="segmentation-{id}-scan-{scan}.seg.nrrd")})
    def get(self, request, project_id: int, segmentation_id: int):
        seg = _finished(request, project_id, segmentation_id)
        return _attachment(segmentation_seg_nrrd(seg), f"{_stem(seg)}.seg.nrrd", "application/octet-stream")


@extend_schema_serializer(component_name="ReferenceLabelsOutput")
class ReferenceOutput(serializers.Serializer):
    scan = serializers.IntegerField(source="scan_id")
    label_set = serializers.IntegerField(source="label_set_id")
    labelled_slices = serializers.ListField(child=serializers.IntegerField(), help_text="working-grid z indices")
    source_name = serializers.CharField()


class ReferenceSegNrrdImportApi(AcquisitionApi):
    """Multipart ``scan_id``, ``file`` (a Slicer .seg.nrrd), ``replace``: the scan's reference labels for the
    project's label set, segments mapped by name."""

    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="ReferenceSegNrrdInput")
    class InputSerializer(serializers.Serializer):
        scan_id = IdField(help_text="a scan of the project's pools or test scans")
        file = serializers.FileField(help_text="a 3D Slicer segmentation (.seg.nrrd) whose segment names are "
                                               "structures of the project's label set")
        replace = serializers.BooleanField(default=False, help_text="replace the scan's existing reference labels")

    @extend_schema(operation_id="projects_references_seg_nrrd", request={"multipart/form-data": InputSerializer},
                   responses={201: ReferenceOutput})
    def post(self, request, project_id: int):
        project = project_of(request, project_id, LEAD)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        scan = project_scan(project, data.validated_data["scan_id"])
        reference = reference_import_seg_nrrd(project=project, scan=scan, upload=data.validated_data["file"],
                                              replace=data.validated_data["replace"])
        return Response(ReferenceOutput(reference).data, status=status.HTTP_201_CREATED)
