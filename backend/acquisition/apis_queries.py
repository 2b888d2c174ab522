"""The annotator's side: take the next query, read its rasters, answer it, or let it go.

Rasters travel as base64 text (docs/api-acquisition.md): ``mask`` = packbits of the
queried pixels, ``predicted`` = zlib uint8 labels, ``uncertainty`` = zlib float16.
"""

from __future__ import annotations

import binascii
import zlib

import numpy as np
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from backend.acquisition import codec
from backend.acquisition.apis_base import AcquisitionApi, project_of, query_of
from backend.acquisition.models import Query
from backend.acquisition.services import (
    SubmissionRejected,
    query_claim,
    query_claim_next,
    query_release,
    query_submit,
)


class QueryOutput(serializers.ModelSerializer):
    step_number = serializers.IntegerField(source="step.number")
    mac = serializers.FloatField()
    mask = serializers.SerializerMethodField(help_text="base64 of np.packbits(row-major bool mask)")
    predicted = serializers.SerializerMethodField(help_text="base64 of zlib(uint8 row-major labels)")
    uncertainty = serializers.SerializerMethodField(help_text="base64 of zlib(float16 little-endian row-major u)")

    class Meta:
        model = Query
        fields = ["id", "step", "step_number", "scan", "z", "height", "width", "status", "n_queried", "n_pixels",
                  "mac", "assignee", "lock_expires", "claimed_at", "answered_by", "answered_at", "seconds_spent",
                  "mask", "predicted", "uncertainty"]

    def get_mask(self, q) -> str:
        return codec.b64(q.mask)

    def get_predicted(self, q) -> str:
        return codec.b64(q.predicted)

    def get_uncertainty(self, q) -> str:
        return codec.b64(q.uncertainty)


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
        seconds_spent = serializers.FloatField(required=False, allow_null=True, min_value=0.0)

    @extend_schema_serializer(component_name="QuerySubmitOutput")
    class OutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = Query
            fields = ["id", "status", "answered_by", "answered_at", "seconds_spent", "n_queried"]

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request, project_id: int, query_id: int):
        query = query_of(request, project_id, query_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        labels = _decode(data.validated_data["labels"], data.validated_data["encoding"])
        query = query_submit(query=query, user=request.user, labels=labels,
                             seconds_spent=data.validated_data.get("seconds_spent"))
        return Response(self.OutputSerializer(query).data, status=status.HTTP_201_CREATED)


def _decode(text: str, encoding: str) -> np.ndarray:
    try:
        raw = codec.unb64(text)
        if encoding == "zlib":
            raw = zlib.decompress(raw)
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise SubmissionRejected(f"labels are not valid base64{' of zlib data' if encoding == 'zlib' else ''}: "
                                 f"{exc}", code="bad_encoding") from exc
    return np.frombuffer(raw, dtype=np.uint8)
