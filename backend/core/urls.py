from django.urls import path

from backend.core.apis import DiagnosticsPingApi, HealthApi

urlpatterns = [
    path("health/", HealthApi.as_view(), name="health"),
    path("diagnostics/ping/", DiagnosticsPingApi.as_view(), name="diagnostics-ping"),
]
