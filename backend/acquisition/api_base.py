"""Shared pieces of the acquisition API: its domain errors' answers and object lookup through access rules."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.views import APIView

from backend.acquisition.errors import StepConflict
from backend.acquisition.models import AcquisitionStep, ModelVersion, Query, Segmentation
from backend.acquisition.states import IllegalTransition
from backend.core.errors import register_domain_error
from backend.projects.access import Role, project_for

ANNOTATOR, LEAD = Role.ANNOTATOR, Role.LEAD

# Answered in the API's error shape by backend.core.errors; a refused submission
# (SubmissionRejected) is a ValidationError, a 400 with its own code.
register_domain_error(StepConflict, status.HTTP_409_CONFLICT, "conflict")  # QueryLocked too
register_domain_error(IllegalTransition, status.HTTP_409_CONFLICT, "illegal_transition")


class AcquisitionApi(APIView):
    """The base of the acquisition views (errors: ``backend.core.errors``)."""


@extend_schema_serializer(component_name="GpuQueuePlace")
class QueuePlaceOutput(serializers.Serializer):
    position = serializers.IntegerField(help_text="1 = next to run; 0 = running")
    running = serializers.ListField(child=serializers.CharField(), help_text="the jobs running on the gpu queue now")
    ahead = serializers.IntegerField(help_text="jobs sent before this one and not yet taken")
    waiting = serializers.CharField(allow_null=True, help_text="why it does not move yet, for a person")


class _AnyFileRenderer(BaseRenderer):
    """Accepts the ``Accept`` of a client asking for a file (its type or ``*/*``); the views send the file."""

    media_type = "*/*"
    format = "file"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class DownloadApi(AcquisitionApi):
    """A view that sends a file; its errors are JSON whatever the client accepts (``backend.core.errors``)."""

    renderer_classes = [JSONRenderer, _AnyFileRenderer]


# The schema's header of a download's 200 answer.
ATTACHMENT = OpenApiParameter("Content-Disposition", str, OpenApiParameter.HEADER, response=[200],
                              description='attachment; filename="<name>"')


def project_of(request, project_id: int, role: str = ANNOTATOR):
    return project_for(request.user, project_id, min_role=role)


def step_of(request, project_id: int, step_id: int, role: str = ANNOTATOR) -> AcquisitionStep:
    project = project_of(request, project_id, role)
    return get_object_or_404(AcquisitionStep, pk=step_id, project=project)


def query_of(request, project_id: int, query_id: int, role: str = ANNOTATOR) -> Query:
    project = project_of(request, project_id, role)
    query = get_object_or_404(Query.objects.select_related("step"), pk=query_id, step__project=project)
    query.step.project = project  # already read: the services need it, and need not read it again
    return query


def version_of(request, project_id: int, version_id: int, role: str = ANNOTATOR) -> ModelVersion:
    project = project_of(request, project_id, role)
    return get_object_or_404(ModelVersion, pk=version_id, project=project)


def segmentation_of(request, project_id: int, segmentation_id: int, role: str = ANNOTATOR) -> Segmentation:
    project = project_of(request, project_id, role)
    return get_object_or_404(Segmentation.objects.select_related("scan", "model_version"),
                             pk=segmentation_id, project=project)


def query_params(serializer_class, request) -> dict:
    """The validated query string of a GET (400 with the serializer's messages otherwise)."""
    params = serializer_class(data=request.query_params)
    params.is_valid(raise_exception=True)
    return params.validated_data


def read_or_400(field: str, read, *args):
    """``read(*args)``, its ValueError (a sentence about the input) turned into a 400 on ``field``."""
    try:
        return read(*args)
    except ValueError as exc:
        raise serializers.ValidationError({field: [str(exc)]}) from exc
