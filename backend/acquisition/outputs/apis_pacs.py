"""Sending a finished segmentation to a PACS archive as DICOM-SEG (``pacs_send``).

Leads and admins of the segmentation's project may send it (it writes into the hospital's
archive, as an export does onto a disk): annotators get 403, anybody else 404, like every
other object of a project. The archive is any one the site's administrators configured.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from backend.acquisition.api_base import LEAD, AcquisitionApi, segmentation_of
from backend.acquisition.outputs.pacs_send import segmentation_send
from backend.core.errors import ErrorOutput
from backend.core.ids import IdField
from backend.imaging.pacs.apis import PACS_ERRORS, archive_for


class SegmentationSendApi(AcquisitionApi):
    class InputSerializer(serializers.Serializer):
        archive = IdField(help_text="The PACS archive (GET /api/pacs/archives/).")

        class Meta:
            ref_name = "SegmentationSendInput"

    class OutputSerializer(serializers.Serializer):
        archive = serializers.IntegerField()
        study_uid = serializers.CharField()
        series_uid = serializers.CharField(help_text="the new SEG series")
        sop_instance_uid = serializers.CharField()
        referenced_series_uid = serializers.CharField(help_text="the CT series the SEG lies over")

        class Meta:
            ref_name = "SegmentationSendOutput"

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer, 409: ErrorOutput, **PACS_ERRORS})
    def post(self, request, project_id: int, segmentation_id: int):
        seg = segmentation_of(request, project_id, segmentation_id, LEAD)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        archive = archive_for(request.user, data.validated_data["archive"])
        sent = segmentation_send(segmentation=seg, archive=archive)
        return Response(self.OutputSerializer(sent).data, status=status.HTTP_201_CREATED)
