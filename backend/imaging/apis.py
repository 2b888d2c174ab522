"""Pools, scans and their slices.

Slices are axial slices of the working grid (method.md §1), z from 0. Each comes as a
PNG for display and as raw little-endian values for scripts; ``X-Shape`` gives
"rows,columns" and ``X-Dtype`` the numpy type of the raw bytes. Pools and scans are
seen through the projects that use them (``backend.projects.access``).
"""

from __future__ import annotations

import math

import numpy as np
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import renderers, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.core.errors import ERRORS, READ_ERRORS, ErrorOutput
from backend.core.fields import FiniteFloatField
from backend.core.ids import IdField
from backend.imaging import selectors, services_pools, slices
from backend.projects.access import Role, pool_for, pools_visible_to, project_for, scan_for

# --- Pools and scans -----------------------------------------------------------------------


class PoolOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    n_scans = serializers.IntegerField()
    created = serializers.DateTimeField()


def _pool_output(pool) -> dict:
    return PoolOutput(selectors.pools_with_counts(type(pool).objects.filter(pk=pool.pk)).get()).data


class PoolListApi(APIView):
    class InputSerializer(serializers.Serializer):
        project = IdField(help_text="Project the new pool is added to (admin).")
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(allow_blank=True, default="")

        class Meta:
            ref_name = "PoolCreate"

    @extend_schema(operation_id="pools_list", responses={200: PoolOutput(many=True)})
    def get(self, request):
        """Pools used by your projects."""
        return Response(PoolOutput(selectors.pools_with_counts(pools_visible_to(request.user)), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: PoolOutput, **ERRORS})
    def post(self, request):
        """Create an empty pool in a project (admin of that project); import scans into it next."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        project = project_for(request.user, fields.pop("project"), min_role=Role.ADMIN)
        pool = services_pools.pool_create(project=project, user=request.user, **fields)
        return Response(_pool_output(pool), status=status.HTTP_201_CREATED)


class PoolDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(allow_blank=True, required=False)

        class Meta:
            ref_name = "PoolUpdate"

    @extend_schema(responses={200: PoolOutput, **READ_ERRORS})
    def get(self, request, pool_id: int):
        return Response(_pool_output(pool_for(request.user, pool_id)))

    @extend_schema(request=InputSerializer, responses={200: PoolOutput, **ERRORS})
    def patch(self, request, pool_id: int):
        """Rename or describe the pool (admin of a project using it)."""
        pool = pool_for(request.user, pool_id, min_role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(_pool_output(services_pools.pool_update(pool=pool, **data.validated_data)))

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, pool_id: int):
        """Delete the pool and its scans (admin of every project using it, or superuser)."""
        services_pools.pool_delete(pool=pool_for(request.user, pool_id, min_role=Role.ADMIN), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ScanOutput(serializers.Serializer):
    id = serializers.IntegerField()
    pool = serializers.IntegerField(source="pool_id")
    name = serializers.CharField()
    # Not an enum in the schema: "status" enums of other components would collide with its name.
    status = serializers.CharField(help_text="ready, or failed (then it has no volume).")
    shape = serializers.ListField(child=serializers.IntegerField(), source="geometry.shape",
                                  help_text="(z, y, x) voxels of the working grid.")
    spacing = serializers.ListField(child=serializers.FloatField(), source="geometry.spacing",
                                    help_text="(z, y, x) mm of the working grid.")
    geometry = serializers.DictField(help_text="Working grid: shape, spacing, origin, direction.")
    original_geometry = serializers.DictField()
    modality = serializers.CharField()
    manufacturer = serializers.CharField()
    series_description = serializers.CharField()
    source_format = serializers.CharField()
    reference_label_sets = serializers.SerializerMethodField(
        help_text="Label sets for which a reference label map exists.")
    created = serializers.DateTimeField()

    def get_reference_label_sets(self, scan) -> list[int]:
        return sorted(ref.label_set_id for ref in scan.reference_labels.all())


class PoolScanListApi(APIView):
    @extend_schema(operation_id="pool_scans_list", responses={200: ScanOutput(many=True), **READ_ERRORS})
    def get(self, request, pool_id: int):
        pool = pool_for(request.user, pool_id)
        scans = selectors.pool_scans(pool).prefetch_related("reference_labels")
        return Response(ScanOutput(scans, many=True).data)


class ScanDetailApi(APIView):
    @extend_schema(responses={200: ScanOutput, **READ_ERRORS})
    def get(self, request, scan_id: int):
        return Response(ScanOutput(scan_for(request.user, scan_id)).data)


# --- Slices --------------------------------------------------------------------------------


class PNGRenderer(renderers.BaseRenderer):
    media_type = "image/png"
    format = "png"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class OctetRenderer(PNGRenderer):
    media_type = "application/octet-stream"
    format = "raw"


_RAW_HEADERS = [
    OpenApiParameter("X-Shape", str, OpenApiParameter.HEADER, response=[200],
                     description='Slice shape "rows,columns" (y, x).'),
    OpenApiParameter("X-Dtype", str, OpenApiParameter.HEADER, response=[200],
                     description="numpy type of the values: <i2 (int16 LE), <u1 or <f4 (float32 LE)."),
]
_ERRORS = {(status_code, "application/json"): ErrorOutput for status_code in (400, 403, 404)}


def _schema(kind: str, *, png: bool, parameters: list | None = None):
    body = (200, "image/png") if png else (200, "application/octet-stream")
    return extend_schema(
        summary=f"{kind} slice as {'PNG' if png else 'raw values'}",
        parameters=(parameters or []) + ([] if png else _RAW_HEADERS),
        responses={body: OpenApiResponse(OpenApiTypes.BINARY), **_ERRORS},
    )


class _SliceApi(APIView):
    """Errors of an image endpoint are JSON, whatever image type the client accepted (backend.core.errors)."""

    renderer_classes = [PNGRenderer, renderers.JSONRenderer]

    @classmethod
    def png(cls, image, *, palette=None) -> HttpResponse:
        """A (Y, X) uint8 image as a PNG response at the configured compression."""
        return cls.image(slices.encode_png(image, palette=palette, level=settings.MYOLABEL_PNG_LEVEL))

    @staticmethod
    def image(png: bytes) -> HttpResponse:
        response = HttpResponse(png, content_type="image/png")
        response["Cache-Control"] = slices.CACHE_CONTROL
        return response

    @staticmethod
    def raw(array, dtype: str) -> HttpResponse:
        response = HttpResponse(slices.raw_bytes(array, dtype), content_type="application/octet-stream")
        for name, value in slices.raw_headers(array.shape, dtype).items():
            response[name] = value
        return response


class _RawSliceApi(_SliceApi):
    renderer_classes = [OctetRenderer, renderers.JSONRenderer]


class WindowQuery(serializers.Serializer):
    preset = serializers.ChoiceField(choices=list(slices.WINDOW_PRESETS), required=False,
                                     help_text="soft: W 400 / L 40; bone: W 1800 / L 400. Default soft.")
    window = FiniteFloatField(min_value=slices.WINDOW_RANGE[0], max_value=slices.WINDOW_RANGE[1], required=False,
                              help_text="Window width, HU.")
    level = FiniteFloatField(min_value=slices.LEVEL_RANGE[0], max_value=slices.LEVEL_RANGE[1], required=False,
                             help_text="Window level, HU.")

    def validate(self, attrs):
        if ("window" in attrs) != ("level" in attrs):
            raise serializers.ValidationError("Give both window and level, or neither (then a preset applies).")
        if "window" not in attrs:
            attrs["window"], attrs["level"] = slices.WINDOW_PRESETS[attrs.get("preset", slices.DEFAULT_PRESET)]
        return attrs


class ScanSlicePngApi(_SliceApi):
    @_schema("CT", png=True, parameters=[WindowQuery])
    def get(self, request, scan_id: int, z: int):
        """CT slice windowed to grey levels; window/level in HU, or a preset (default soft tissue)."""
        scan = scan_for(request.user, scan_id)
        query = WindowQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        hu = selectors.scan_slice(scan, z)
        grey = slices.window_to_uint8(hu, window=query.validated_data["window"], level=query.validated_data["level"])
        return self.png(grey)


class ScanSliceRawApi(_RawSliceApi):
    @_schema("CT", png=False)
    def get(self, request, scan_id: int, z: int):
        """CT slice in HU: int16 little-endian, rows of X values."""
        return self.raw(selectors.scan_slice(scan_for(request.user, scan_id), z), "<i2")


class LabelQuery(serializers.Serializer):
    label_set = IdField(required=False,
                        help_text="Label set of the reference; default the oldest reference.")


def _requested_reference(request, scan_id: int):
    """The reference label map of a visible scan, for the ``?label_set=`` of the request."""
    scan = scan_for(request.user, scan_id)
    query = LabelQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    return selectors.scan_reference(scan, label_set_id=query.validated_data.get("label_set"))


class ScanLabelPngApi(_SliceApi):
    @_schema("Reference label", png=True, parameters=[LabelQuery])
    def get(self, request, scan_id: int, z: int):
        """Reference label map as an indexed PNG in the label set's colours; background transparent."""
        reference = _requested_reference(request, scan_id)
        palette = slices.label_palette(selectors.label_colours(reference.label_set))
        return self.png(selectors.reference_slice(reference, z), palette=palette)


class ScanLabelRawApi(_RawSliceApi):
    @_schema("Reference label", png=False, parameters=[LabelQuery])
    def get(self, request, scan_id: int, z: int):
        """Reference label values, uint8 (0 = background)."""
        reference = _requested_reference(request, scan_id)
        return self.raw(selectors.reference_slice(reference, z), "<u1")


class UncertaintyQuery(serializers.Serializer):
    project = IdField(required=False,
                      help_text="Only this project's models; default the newest visible map.")


class UncertaintyPngQuery(UncertaintyQuery):
    vmax = FiniteFloatField(min_value=1e-9, max_value=1e6, required=False,
                            help_text="Uncertainty shown white; default the slice maximum.")


def _uncertainty(request, scan_id: int, z: int, query_class):
    scan = scan_for(request.user, scan_id)
    query = query_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    project_id = query.validated_data.get("project")
    if project_id is not None:
        project_for(request.user, project_id)
    values = selectors.uncertainty_slice(scan, z, user=request.user, project_id=project_id)
    return values, query.validated_data


class ScanUncertaintyPngApi(_SliceApi):
    @_schema("Pixel uncertainty", png=True, parameters=[UncertaintyPngQuery])
    def get(self, request, scan_id: int, z: int):
        """Pixel uncertainty u as grey levels from 0 to ``vmax``; 404 until a map exists."""
        values, options = _uncertainty(request, scan_id, z, UncertaintyPngQuery)
        vmax = options.get("vmax") or float(np.nanmax(values, initial=0.0))
        if not math.isfinite(vmax) or vmax <= 0:
            vmax = 1.0  # an all-zero (or broken) slice: any scale shows it black
        response = self.png(slices.scale_to_uint8(values, vmax=vmax))
        response["X-Vmax"] = f"{vmax:.6g}"
        return response


class ScanUncertaintyRawApi(_RawSliceApi):
    @_schema("Pixel uncertainty", png=False, parameters=[UncertaintyQuery])
    def get(self, request, scan_id: int, z: int):
        """Pixel uncertainty u, float32 little-endian; 404 until a map exists."""
        values, _ = _uncertainty(request, scan_id, z, UncertaintyQuery)
        return self.raw(values, "<f4")
