"""The labels around a query, read only: the labels and the model's prediction of any slice of its
scan (shown while the expert looks at the neighbouring slices) and the label rows of a coronal or
sagittal plane (shown on the reformats), by one rule. Rasters travel as base64 of zlib uint8, 255 = no label (docs/annotator.md)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response

from backend.acquisition import codec
from backend.acquisition.annotation.selectors import (
    PLANES,
    PredictionSource,
    ReformatLabels,
    SliceLabels,
    reformat_labels,
    slice_labels,
)
from backend.acquisition.api_base import AcquisitionApi, query_of, query_params, read_or_400


@extend_schema_serializer(component_name="PredictionSource")
class PredictionSourceOutput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["segmentation", "step"], help_text=(
        "segmentation: the project's newest finished segmentation of the scan (every slice); step: the "
        "prediction the query's step stored with its queries (their slices only)"))
    description = serializers.CharField(help_text="the source in words, for the legend")
    model = serializers.IntegerField(allow_null=True, help_text="the segmenting model's number")
    step = serializers.IntegerField(allow_null=True, help_text="the step whose queries hold the prediction")

    def to_representation(self, instance: PredictionSource) -> dict:
        return {"kind": instance.kind, "description": instance.description, "model": instance.model_number,
                "step": instance.step_number}


def _raster(labels) -> str | None:
    return None if labels is None else codec.b64(codec.pack_labels(labels))


class QuerySliceLabelsApi(AcquisitionApi):
    """What slice ``z`` of the query's scan shows while the expert looks at it: its labels (an answered
    query, else reference labels; never a held-out slice) or ``labelled: null``, and the model's labels
    or ``predicted: null`` when nothing is predicted for it (the step's prediction covers only the slices
    it queried)."""

    class InputSerializer(serializers.Serializer):
        z = serializers.IntegerField(min_value=0, help_text="the slice of the query's scan")

    @extend_schema_serializer(component_name="SliceLabels")
    class OutputSerializer(serializers.Serializer):
        z = serializers.IntegerField()
        labelled = serializers.CharField(allow_null=True, help_text="base64 of zlib(uint8 row-major labels); 255 = "
                                                                    "unlabelled; null when nobody labelled the slice")
        labelled_source = serializers.ChoiceField(choices=["query", "reference"], allow_null=True)
        predicted = serializers.CharField(allow_null=True, help_text="base64 of zlib(uint8 row-major labels), or "
                                                                     "null when nothing is predicted for the slice")
        source = PredictionSourceOutput(help_text="where the prediction comes from")

        def to_representation(self, instance: SliceLabels) -> dict:
            return {"z": instance.z, "labelled": _raster(instance.labelled), "labelled_source": instance.labelled_source,
                    "predicted": _raster(instance.predicted), "source": PredictionSourceOutput(instance.source).data}

    @extend_schema(parameters=[InputSerializer], responses={200: OutputSerializer})
    def get(self, request, project_id: int, query_id: int):
        query = query_of(request, project_id, query_id)
        found = read_or_400("z", slice_labels, query, query_params(self.InputSerializer, request)["z"])
        return Response(self.OutputSerializer(found).data)


class QueryReformatLabelsApi(AcquisitionApi):
    """The label rows of the coronal or sagittal plane of ``queries/<id>/reformat/``: the labelled rows
    (answered queries, else reference labels; never a held-out slice) and the predicted rows."""

    class InputSerializer(serializers.Serializer):
        plane = serializers.ChoiceField(choices=sorted(PLANES), help_text="coronal (fixed y) or sagittal (fixed x)")
        at = serializers.IntegerField(min_value=0, help_text="the y (coronal) or x (sagittal) of the plane")

    @extend_schema_serializer(component_name="ReformatLabels")
    class OutputSerializer(serializers.Serializer):
        shape = serializers.ListField(child=serializers.IntegerField(), help_text="(slices, width) of each raster")
        labelled = serializers.CharField(help_text="base64 of zlib(uint8 (Z, N) labels); 255 = nobody labelled")
        labelled_rows = serializers.ListField(child=serializers.DictField(), help_text="[{z, source}]: "
                                              "source query (an answered query) or reference")
        predicted = serializers.CharField(help_text="base64 of zlib(uint8 (Z, N) labels); 255 = nothing predicted")
        predicted_rows = serializers.ListField(child=serializers.IntegerField())
        source = PredictionSourceOutput()

        def to_representation(self, instance: ReformatLabels) -> dict:
            return {"shape": list(instance.labelled.shape), "labelled": _raster(instance.labelled),
                    "labelled_rows": [{"z": z, "source": s} for z, s in instance.labelled_rows.items()],
                    "predicted": _raster(instance.predicted),
                    "predicted_rows": instance.predicted_rows, "source": PredictionSourceOutput(instance.source).data}

    @extend_schema(parameters=[InputSerializer], responses={200: OutputSerializer})
    def get(self, request, project_id: int, query_id: int):
        query = query_of(request, project_id, query_id)
        params = query_params(self.InputSerializer, request)
        found = read_or_400("at", reformat_labels, query, params["plane"], params["at"])
        return Response(self.OutputSerializer(found).data)
