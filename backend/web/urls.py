"""Browser pages (HTML); their data comes from the REST API under /api/."""

from django.urls import path

import backend.core.ids  # noqa: F401  (registers the <id:...> converter)
from backend.web import views

urlpatterns = [
    path("projects/<id:project_id>/annotate/", views.AnnotatorView.as_view(), name="web-annotate"),
    path("projects/<id:project_id>/dashboard/", views.DashboardView.as_view(), name="web-dashboard"),
    path("admin-tools/", views.AdminToolsView.as_view(), name="web-admin-tools"),
    path("scans/<id:scan_id>/", views.ScanViewerView.as_view(), name="web-scan"),
]
