"""Shared pieces of the acquisition API: error mapping and object lookup through access rules."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.acquisition.models import AcquisitionStep, ModelVersion, Query, Segmentation
from backend.acquisition.services import QueryLocked, StepConflict, SubmissionRejected
from backend.acquisition.states import IllegalTransition
from backend.projects.access import Role, project_for

ANNOTATOR, LEAD = Role.ANNOTATOR, Role.LEAD


def _error(message: str, code: str, http: int) -> Response:
    return Response({"detail": message, "code": code}, status=http)


class AcquisitionApi(APIView):
    """APIView that turns the app's domain errors into 400 / 409 answers with a readable detail."""

    def handle_exception(self, exc):
        if isinstance(exc, SubmissionRejected):
            return _error(exc.messages[0], exc.code or "invalid", status.HTTP_400_BAD_REQUEST)
        if isinstance(exc, QueryLocked | StepConflict):
            return _error(exc.messages[0], exc.code or "conflict", status.HTTP_409_CONFLICT)
        if isinstance(exc, IllegalTransition):
            return _error(str(exc), "illegal_transition", status.HTTP_409_CONFLICT)
        if isinstance(exc, ValidationError):
            return _error("; ".join(exc.messages), "invalid", status.HTTP_400_BAD_REQUEST)
        return super().handle_exception(exc)


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
