"""Lead controls and step views: start / cancel steps, settings, tau preview, MAC, training set.

Queries: ``apis_queries``; models, segmentations and exports: ``apis_models``.
Contract for the browser: docs/api-acquisition.md.
"""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response

from backend.acquisition.api_base import (
    LEAD,
    AcquisitionApi,
    QueuePlaceOutput,
    project_of,
    step_of,
)
from backend.acquisition.gpu_queue import step_queue
from backend.acquisition.models import AcquisitionStep, Query
from backend.acquisition.selectors import mac_summary, step_mac, steps_of, training_set_summary
from backend.acquisition.steps.progress import SUBPHASES
from backend.acquisition.steps.selectors import step_cost_estimate, tau_preview
from backend.acquisition.steps.services import step_cancel, step_start
from backend.acquisition.steps.training_set import (
    ACQUISITION_FIELDS,
    project_acquisition_configure,
    training_set_seed,
)
from backend.projects.models import Project


class StepOutput(serializers.ModelSerializer):
    model_version = serializers.SerializerMethodField()
    mac = serializers.SerializerMethodField()
    subphase_label = serializers.SerializerMethodField()
    queue = serializers.SerializerMethodField()

    class Meta:
        model = AcquisitionStep
        fields = ["id", "number", "state", "reason", "strategy", "tau", "slices_per_step", "k_uncertain",
                  "mc_samples", "percent", "eta_seconds", "subphase", "subphase_label", "subphase_percent",
                  "subphase_eta_seconds", "queue", "cancel_requested", "selected", "stop_reached",
                  "transitions", "created", "updated", "finished", "model_version", "mac", "guard", "costs"]

    def get_subphase_label(self, step) -> str:
        return SUBPHASES.get(step.subphase, "")

    @extend_schema_field(QueuePlaceOutput(allow_null=True))
    def get_queue(self, step) -> dict | None:
        return step_queue(step)

    def get_model_version(self, step) -> int | None:
        version = getattr(step, "model_version", None)
        return version.id if version else None

    def get_mac(self, step) -> dict:
        return step_mac(step)


class StepListApi(AcquisitionApi):
    @extend_schema_serializer(component_name="StepStartInput")
    class InputSerializer(serializers.Serializer):
        force = serializers.BooleanField(default=False, help_text="start even though the stopping rule held")

    @extend_schema(responses={200: StepOutput(many=True)})
    def get(self, request, project_id: int):
        project = project_of(request, project_id)
        return Response(StepOutput(steps_of(project), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: StepOutput})
    def post(self, request, project_id: int):
        project = project_of(request, project_id, LEAD)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        step = step_start(project=project, user=request.user, **data.validated_data)
        return Response(StepOutput(step).data, status=status.HTTP_201_CREATED)


class StepDetailApi(AcquisitionApi):
    @extend_schema(responses={200: StepOutput})
    def get(self, request, project_id: int, step_id: int):
        return Response(StepOutput(step_of(request, project_id, step_id)).data)


class StepCancelApi(AcquisitionApi):
    @extend_schema_serializer(component_name="StepCancelInput")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, max_length=500)

    @extend_schema(request=InputSerializer, responses={202: StepOutput})
    def post(self, request, project_id: int, step_id: int):
        step = step_of(request, project_id, step_id, LEAD)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        step = step_cancel(step=step, user=request.user, reason=data.validated_data.get("reason", ""))
        return Response(StepOutput(step).data, status=status.HTTP_202_ACCEPTED)


class StepQueriesApi(AcquisitionApi):
    @extend_schema_serializer(component_name="StepQueryRow")
    class OutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = Query
            fields = ["id", "scan", "z", "status", "n_queried", "n_pixels", "assignee", "lock_expires",
                      "answered_by", "answered_at", "seconds_spent", "input_events"]

    @extend_schema(responses={200: OutputSerializer(many=True)})
    def get(self, request, project_id: int, step_id: int):
        step = step_of(request, project_id, step_id)
        return Response(self.OutputSerializer(step.queries.order_by("id"), many=True).data)


class SettingsApi(AcquisitionApi):
    @extend_schema_serializer(component_name="AcquisitionSettings")
    class SettingsSerializer(serializers.ModelSerializer):
        class Meta:
            model = Project
            fields = list(ACQUISITION_FIELDS)

    @extend_schema(responses={200: SettingsSerializer})
    def get(self, request, project_id: int):
        return Response(self.SettingsSerializer(project_of(request, project_id)).data)

    @extend_schema(request=SettingsSerializer, responses={200: SettingsSerializer})
    def patch(self, request, project_id: int):
        project = project_of(request, project_id, LEAD)
        data = self.SettingsSerializer(project, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = project_acquisition_configure(project=project, **data.validated_data)
        return Response(self.SettingsSerializer(project).data)


class TauPreviewApi(AcquisitionApi):
    """How many pixels a tau would query, on the uncertainty maps of the latest selected slices."""

    @extend_schema_serializer(component_name="TauPreview")
    class OutputSerializer(serializers.Serializer):
        tau = serializers.FloatField()
        queried_pixels = serializers.IntegerField()
        total_pixels = serializers.IntegerField()
        mac = serializers.FloatField(allow_null=True)
        slices = serializers.IntegerField()
        step = serializers.IntegerField()
        suggested_tau = serializers.FloatField(required=False, allow_null=True)
        suggested_queried_pixels = serializers.IntegerField(required=False)

    @extend_schema_serializer(component_name="TauPreviewParams")
    class InputSerializer(serializers.Serializer):
        tau = serializers.FloatField(required=False, min_value=0.0)
        target_mac = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)

    @extend_schema(parameters=[OpenApiParameter("tau", float), OpenApiParameter("target_mac", float)],
                   responses={200: OutputSerializer})
    def get(self, request, project_id: int):
        project = project_of(request, project_id, LEAD)
        params = self.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        tau = params.validated_data.get("tau", project.tau)
        target_mac = params.validated_data.get("target_mac")
        return Response(self.OutputSerializer(tau_preview(project, tau, target_mac=target_mac)).data)


class StepCostApi(AcquisitionApi):
    """What the next step will cost: training budgets and the inference estimate."""

    @extend_schema_serializer(component_name="TrainingBudget")
    class BudgetSerializer(serializers.Serializer):
        max_epochs = serializers.IntegerField()
        max_seconds = serializers.FloatField()
        device = serializers.CharField()

    @extend_schema_serializer(component_name="StepCost")
    class OutputSerializer(serializers.Serializer):
        device = serializers.CharField()
        first_model = serializers.DictField(allow_null=True, help_text="TrainingBudget of model 0, when there is none yet")
        training = serializers.DictField(help_text="TrainingBudget of the training phase")
        unlabelled_slices = serializers.IntegerField()
        slice_passes = serializers.IntegerField()
        test_slice_passes = serializers.IntegerField()
        seconds_per_slice_pass = serializers.FloatField(allow_null=True)
        measured_on_step = serializers.IntegerField(allow_null=True)
        inference_seconds = serializers.FloatField(allow_null=True)
        evaluation_seconds = serializers.FloatField(allow_null=True)
        total_seconds = serializers.FloatField(allow_null=True)

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request, project_id: int):
        project = project_of(request, project_id, LEAD)
        return Response(self.OutputSerializer(step_cost_estimate(project)).data)


class MacApi(AcquisitionApi):
    @extend_schema(responses={200: dict})
    def get(self, request, project_id: int):
        return Response(mac_summary(project_of(request, project_id, LEAD)))


class TrainingSetApi(AcquisitionApi):
    @extend_schema_serializer(component_name="TrainingSetSummary")
    class OutputSerializer(serializers.Serializer):
        slices = serializers.IntegerField()
        from_references = serializers.IntegerField()
        from_queries = serializers.IntegerField()
        from_cancelled_steps = serializers.IntegerField(
            help_text="answered slices of steps cancelled after the answer: kept, and marked in the export")
        held_out = serializers.IntegerField(help_text="labelled slices kept out of training to measure accuracy")

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request, project_id: int):
        return Response(self.OutputSerializer(training_set_summary(project_of(request, project_id))).data)


class TrainingSetSeedApi(AcquisitionApi):
    @extend_schema_serializer(component_name="TrainingSetSeedInput")
    class InputSerializer(serializers.Serializer):
        fraction = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0,
                                          help_text="share of each reference's labelled slices; empty = all")

    @extend_schema_serializer(component_name="TrainingSetSeedOutput")
    class OutputSerializer(serializers.Serializer):
        added = serializers.IntegerField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request, project_id: int):
        project = project_of(request, project_id, LEAD)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        added = training_set_seed(project=project, fraction=data.validated_data.get("fraction"))
        return Response(self.OutputSerializer({"added": added}).data, status=status.HTTP_201_CREATED)
