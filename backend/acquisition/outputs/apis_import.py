"""Import a model into a project: another project's model, or an uploaded checkpoint (outputs.model_import)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from backend.acquisition.api_base import LEAD, AcquisitionApi, project_of
from backend.acquisition.outputs.apis import ModelVersionOutput
from backend.acquisition.outputs.model_import import (
    CheckpointTooLarge,
    max_checkpoint_bytes,
    model_version_import,
    source_version_for,
)
from backend.core.errors import ErrorOutput, PayloadTooLarge, register_domain_error
from backend.core.ids import IdField

register_domain_error(CheckpointTooLarge, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large")

# The multipart framing around the file: a request a little over the file limit may still hold a file within it.
_FRAMING_BYTES = 64 * 1024


class ModelImportApi(AcquisitionApi):
    """A start from a previous CT: JSON ``{"from_model_version": id}`` or multipart ``checkpoint=<file>``."""

    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="ModelImportInput")
    class InputSerializer(serializers.Serializer):
        from_model_version = IdField(required=False, help_text="a model version of another project you lead, "
                                                               "with the same label set and network")
        checkpoint = serializers.FileField(required=False, help_text="a MyoLabel checkpoint (.pt; "
                                                                     "mltasks.checkpoint format), weights only")

        def validate(self, data):
            if ("from_model_version" in data) == ("checkpoint" in data):
                raise serializers.ValidationError("send either from_model_version (JSON) or a checkpoint file "
                                                  "(multipart), not both")
            return data

    @extend_schema(request=InputSerializer, responses={201: ModelVersionOutput, 409: ErrorOutput, 413: ErrorOutput})
    def post(self, request, project_id: int):
        project = project_of(request, project_id, LEAD)
        # Before the body is read: an oversized upload is refused without storing it anywhere.
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > max_checkpoint_bytes() + _FRAMING_BYTES:
            raise PayloadTooLarge(f"the request has {length} bytes; a checkpoint may have at most "
                                  f"{settings.MYOLABEL_MAX_CHECKPOINT_BYTES} (MYOLABEL_MAX_CHECKPOINT_BYTES)")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        source = data.validated_data.get("from_model_version")
        version = model_version_import(
            project, user=request.user, upload=data.validated_data.get("checkpoint"),
            from_version=source_version_for(request.user, source) if source is not None else None)
        return Response(ModelVersionOutput(version, context={"current_id": version.id}).data,
                        status=status.HTTP_201_CREATED)
