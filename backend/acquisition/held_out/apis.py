"""The lead's held-out slices: list, choose along each pool scan, clear (docs/api-acquisition.md)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from backend.acquisition.api_base import LEAD, AcquisitionApi, project_of
from backend.acquisition.held_out.selectors import held_out_summary
from backend.acquisition.held_out.services import MAX_PER_SCAN, held_out_choose, held_out_clear


@extend_schema_serializer(component_name="HeldOutScan")
class HeldOutScanOutput(serializers.Serializer):
    scan = serializers.IntegerField()
    name = serializers.CharField()
    depth = serializers.IntegerField(help_text="slices of the scan's working grid")
    z = serializers.ListField(child=serializers.IntegerField(), help_text="the held-out slices")


@extend_schema_serializer(component_name="HeldOutSet")
class HeldOutOutput(serializers.Serializer):
    slices = serializers.IntegerField()
    margin = serializers.IntegerField(help_text="slices on each side of a held-out slice kept out of training too")
    evaluation_set = serializers.ChoiceField(choices=["test_scans", "held_out_slices"], allow_null=True,
                                             help_text="what each step's model is evaluated on")
    note = serializers.CharField()
    scans = HeldOutScanOutput(many=True)


class HeldOutApi(AcquisitionApi):
    @extend_schema_serializer(component_name="HeldOutChooseInput")
    class InputSerializer(serializers.Serializer):
        per_scan = serializers.IntegerField(
            min_value=1, max_value=MAX_PER_SCAN, default=6,
            help_text="labelled slices held out per pool scan, spread along it")

    @extend_schema(responses={200: HeldOutOutput})
    def get(self, request, project_id: int):
        return Response(HeldOutOutput(held_out_summary(project_of(request, project_id, LEAD))).data)

    @extend_schema(request=InputSerializer, responses={201: HeldOutOutput})
    def post(self, request, project_id: int):
        project = project_of(request, project_id, LEAD)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        summary = held_out_choose(project=project, per_scan=data.validated_data["per_scan"])
        return Response(HeldOutOutput(summary).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def delete(self, request, project_id: int):
        held_out_clear(project=project_of(request, project_id, LEAD))
        return Response(status=status.HTTP_204_NO_CONTENT)
