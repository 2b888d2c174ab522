"""Browser pages (HTML); their data comes from the REST API under /api/."""

from django.urls import path

from backend.web import views

urlpatterns = [
    path("projects/<int:project_id>/annotate/", views.AnnotatorView.as_view(), name="web-annotate"),
    path("projects/<int:project_id>/dashboard/", views.DashboardView.as_view(), name="web-dashboard"),
    path("admin-tools/", views.AdminToolsView.as_view(), name="web-admin-tools"),
    path("scans/<int:scan_id>/", views.ScanViewerView.as_view(), name="web-scan"),
]
