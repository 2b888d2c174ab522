"""The annotator's side: take the next query, read its rasters, answer it, or let it go.

Rasters travel as base64 text (docs/api-acquisition.md): ``mask`` = packbits of the
queried pixels, ``predicted`` = zlib uint8 labels, ``uncertainty`` = zlib float16.
"""

from __future__ import annotations

import binascii
import zlib

import numpy as np
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from backend.acquisition import codec
from backend.acquisition.annotation.selectors import PLANES, answered_slices_near, query_reformat
from backend.acquisition.annotation.services import (
    SubmissionRejected,
    query_claim,
    query_claim_next,
    query_release,
    query_submit,
)
from backend.acquisition.api_base import (
    AcquisitionApi,
    DownloadApi,
    project_of,
    query_of,
    query_params,
    read_or_400,
)
from backend.acquisition.models import Query
from backend.imaging import slices

_TIME = serializers.DateTimeField()
# Bounds of the client's own figures: a day on one slice, a million inputs; beyond is a broken client.
MAX_SECONDS = 24 * 3600.0
MAX_INPUT_EVENTS = 1_000_000


def _time(value) -> str | None:
    return None if value is None else _TIME.to_representation(value)


def query_output(q: Query) -> dict:
    """An annotator's view of a query (``QueryOutput``); the fast path sends the same."""
    return {"id": q.id, "step": q.step_id, "step_number": q.step.number, "scan": q.scan_id, "z": q.z,
            "height": q.height, "width": q.width, "status": q.status, "n_queried": q.n_queried,
            "n_pixels": q.n_pixels, "mac": q.mac, "assignee": q.assignee_id,
            "lock_expires": _time(q.lock_expires), "claimed_at": _time(q.claimed_at),
            "answered_by": q.answered_by_id, "answered_at": _time(q.answered_at),
            "seconds_spent": None if q.seconds_spent is None else float(q.seconds_spent),
            "input_events": q.input_events,
            "mask": codec.b64(q.mask), "predicted": codec.b64(q.predicted), "uncertainty": codec.b64(q.uncertainty)}


def submission_output(q: Query) -> dict:
    """What answering a query returns (``QuerySubmitOutput``); the fast path sends the same."""
    return {"id": q.id, "status": q.status, "answered_by": q.answered_by_id, "answered_at": _time(q.answered_at),
            "seconds_spent": None if q.seconds_spent is None else float(q.seconds_spent),
            "input_events": q.input_events, "n_queried": q.n_queried}


# The two output serializers document the API; query_output and submission_output build
# the data, one function each for the DRF views and the fast path (query_fastpath.py).
class QueryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    step = serializers.IntegerField()
    step_number = serializers.IntegerField()
    scan = serializers.IntegerField()
    z = serializers.IntegerField()
    height = serializers.IntegerField()
    width = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Query.Status.choices)
    n_queried = serializers.IntegerField()
    n_pixels = serializers.IntegerField()
    mac = serializers.FloatField()
    assignee = serializers.IntegerField(allow_null=True)
    lock_expires = serializers.DateTimeField(allow_null=True)
    claimed_at = serializers.DateTimeField(allow_null=True)
    answered_by = serializers.IntegerField(allow_null=True)
    answered_at = serializers.DateTimeField(allow_null=True)
    seconds_spent = serializers.FloatField(allow_null=True)
    input_events = serializers.IntegerField(allow_null=True)
    mask = serializers.CharField(help_text="base64 of np.packbits(row-major bool mask)")
    predicted = serializers.CharField(help_text="base64 of zlib(uint8 row-major labels)")
    uncertainty = serializers.CharField(help_text="base64 of zlib(float16 little-endian row-major u)")

    def to_representation(self, instance: Query) -> dict:
        return query_output(instance)


class QueryNextApi(AcquisitionApi):
    """Lock the next free query for the caller (or return the one they already hold); 204 when none is left."""

    @extend_schema(request=None, responses={200: QueryOutput, 204: None})
    def post(self, request, project_id: int):
        project = project_of(request, project_id)
        query = query_claim_next(project=project, user=request.user)
        if query is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(QueryOutput(query).data)


class QueryDetailApi(AcquisitionApi):
    @extend_schema(responses={200: QueryOutput})
    def get(self, request, project_id: int, query_id: int):
        return Response(QueryOutput(query_of(request, project_id, query_id)).data)


class NearbySliceOutput(serializers.Serializer):
    z = serializers.IntegerField()
    source = serializers.CharField(help_text="reference (a reference label map) or query (an answered query)")
    labels = serializers.CharField(help_text="base64 of zlib(uint8 row-major labels); 255 = unlabelled")
    answered = serializers.CharField(help_text="base64 of np.packbits(row-major mask): labels a person gave")

    def to_representation(self, instance) -> dict:
        return {"z": instance.z, "source": instance.source, "labels": codec.b64(instance.labels),
                "answered": codec.b64(instance.answered)}


class QueryNearbyApi(AcquisitionApi):
    """The labelled slices of the query's scan nearest below and above it (at most one each side, no
    held-out slice): a starting point to copy, or two ends to interpolate between."""

    @extend_schema(responses={200: NearbySliceOutput(many=True)})
    def get(self, request, project_id: int, query_id: int):
        query = query_of(request, project_id, query_id)
        return Response(NearbySliceOutput(answered_slices_near(query), many=True).data)


class QueryReformatApi(DownloadApi):
    """The coronal or sagittal plane through the query's scan, raw int16 HU (``X-Shape``: Z, width),
    with ``X-Spacing`` (mm along z, mm in the plane) for its aspect; the query's slice is row ``z``."""

    class InputSerializer(serializers.Serializer):
        plane = serializers.ChoiceField(choices=sorted(PLANES), help_text="coronal (fixed y) or sagittal (fixed x)")
        at = serializers.IntegerField(min_value=0, help_text="the y (coronal) or x (sagittal) of the plane")

    @extend_schema(parameters=[InputSerializer], responses={
        (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="int16 little-endian")})
    def get(self, request, project_id: int, query_id: int):
        query = query_of(request, project_id, query_id)
        params = query_params(self.InputSerializer, request)
        plane = read_or_400("at", query_reformat, query, params["plane"], params["at"])
        response = HttpResponse(slices.raw_bytes(plane, "<i2"), content_type="application/octet-stream")
        for name, value in slices.raw_headers(plane.shape, "<i2").items():
            response[name] = value
        spacing = query.scan.geometry.get("spacing") or [1.0, 1.0, 1.0]
        in_plane = spacing[2] if params["plane"] == "coronal" else spacing[1]
        response["X-Spacing"] = f"{float(spacing[0]):.6g},{float(in_plane):.6g}"
        response["Access-Control-Expose-Headers"] += ", X-Spacing"
        return response


class QueryClaimApi(AcquisitionApi):
    """Lock (or renew the lock of) one query; 409 when another annotator holds it."""

    @extend_schema(request=None, responses={200: QueryOutput})
    def post(self, request, project_id: int, query_id: int):
        query = query_claim(query=query_of(request, project_id, query_id), user=request.user)
        return Response(QueryOutput(query).data)


class QueryReleaseApi(AcquisitionApi):
    @extend_schema(request=None, responses={204: None})
    def post(self, request, project_id: int, query_id: int):
        query_release(query=query_of(request, project_id, query_id), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class QuerySubmitApi(AcquisitionApi):
    @extend_schema_serializer(component_name="QuerySubmitInput")
    class InputSerializer(serializers.Serializer):
        labels = serializers.CharField(help_text="base64 of H*W uint8 labels in row-major order; 255 outside "
                                                 "the query (and nowhere inside it)")
        encoding = serializers.ChoiceField(choices=["raw", "zlib"], default="raw")
        seconds_spent = serializers.FloatField(required=False, allow_null=True, min_value=0.0,
                                               max_value=MAX_SECONDS)
        input_events = serializers.IntegerField(
            required=False, allow_null=True, min_value=0, max_value=MAX_INPUT_EVENTS,
            help_text="pointer presses, clicks and keys that changed or confirmed labels (the client's count)")

    @extend_schema_serializer(component_name="QuerySubmitOutput")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        status = serializers.ChoiceField(choices=Query.Status.choices)
        answered_by = serializers.IntegerField(allow_null=True)
        answered_at = serializers.DateTimeField(allow_null=True)
        seconds_spent = serializers.FloatField(allow_null=True)
        input_events = serializers.IntegerField(allow_null=True)
        n_queried = serializers.IntegerField()

        def to_representation(self, instance: Query) -> dict:
            return submission_output(instance)

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request, project_id: int, query_id: int):
        query = query_of(request, project_id, query_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        labels = decode_labels(data.validated_data["labels"], data.validated_data["encoding"], pixels(query))
        query = query_submit(query=query, user=request.user, labels=labels,
                             seconds_spent=data.validated_data.get("seconds_spent"),
                             input_events=data.validated_data.get("input_events"))
        return Response(self.OutputSerializer(query).data, status=status.HTTP_201_CREATED)


def pixels(query: Query) -> int:
    return query.height * query.width


def decode_labels(text: str, encoding: str, size: int) -> np.ndarray:
    """The submitted raster of a slice of ``size`` pixels; zlib data is inflated to at most ``size + 1`` bytes.

    SubmissionRejected (nothing stored) if it is not base64 (of zlib data), or inflates to more than the
    slice (``labels_too_large``); a raster of the wrong size is refused later (``bad_size``).
    """
    try:
        raw = codec.unb64(text)
        if encoding == "zlib":
            raw = codec.inflate(raw, size)
    except codec.RasterTooLarge as exc:
        raise SubmissionRejected(f"the zlib labels inflate to more than the slice's {size} pixels (one uint8 "
                                 "each); send exactly one value per pixel", code="labels_too_large") from exc
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise SubmissionRejected(f"labels are not valid base64{' of zlib data' if encoding == 'zlib' else ''}: "
                                 f"{exc}", code="bad_encoding") from exc
    return np.frombuffer(raw, dtype=np.uint8)
