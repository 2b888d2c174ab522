"""Health and diagnostics endpoints."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.core import jobs
from backend.core.health import health_report
from backend.core.realtime import user_group

_CheckSerializer = inline_serializer(
    "HealthCheck",
    {"ok": serializers.BooleanField(), "detail": serializers.CharField(), "ms": serializers.FloatField()},
)


_HealthSerializer = inline_serializer(
    "Health",
    {
        "status": serializers.ChoiceField(choices=["ok", "degraded"]),
        "mode": serializers.CharField(),
        "checks": serializers.DictField(child=_CheckSerializer),
    },
)


class HealthApi(APIView):
    """Status of database, broker, worker and channel layer; 503 when any is down."""

    permission_classes = [AllowAny]

    @extend_schema(responses={(200, "application/json"): _HealthSerializer,
                              (503, "application/json"): _HealthSerializer})
    def get(self, request):
        # Anyone may ask (load balancers do); names of projects, hosts and processes only for staff.
        report = health_report(detailed=bool(request.user and request.user.is_staff))
        code = status.HTTP_200_OK if report["status"] == "ok" else status.HTTP_503_SERVICE_UNAVAILABLE
        return Response(report, status=code)


class DiagnosticsPingApi(APIView):
    """Send a diagnostic task through broker and worker; its progress arrives on /ws/events/."""

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        steps = serializers.IntegerField(min_value=1, max_value=100, default=5)
        delay_seconds = serializers.FloatField(min_value=0.0, max_value=5.0, default=0.2)

    class OutputSerializer(serializers.Serializer):
        group = serializers.CharField()
        steps = serializers.IntegerField()

    @extend_schema(request=InputSerializer, responses={202: OutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        args = (request.user.id, data.validated_data["steps"], data.validated_data["delay_seconds"])
        transaction.on_commit(lambda: jobs.send("core.diagnostics_ping", *args))
        out = {"group": user_group(request.user.id), "steps": data.validated_data["steps"]}
        return Response(self.OutputSerializer(out).data, status=status.HTTP_202_ACCEPTED)
