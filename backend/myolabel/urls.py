"""Top-level URLs: API under /api/, docs under /api/docs/, pages from frontend."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from backend.core.apis_auth import TokenObtainApi
from backend.core.errors import api_bad_request, api_not_found, api_server_error
from backend.core.views import HomeView

urlpatterns = [
    path("", HomeView.as_view(), name="home"),
    path("admin/", admin.site.urls),
    path("", include("backend.web.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file: the CSP allows no inline script.
    # No Redoc page: its bundle needs inline styles and blob workers and loads images from
    # cdn.redoc.ly; Swagger UI shows the same schema under the strict policy.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("backend.core.urls")),
    path("api/auth/token/", TokenObtainApi.as_view(), name="auth-token"),
    path("api/", include("backend.projects.urls")),
    path("api/", include("backend.imaging.urls")),
    path("api/", include("backend.acquisition.urls")),
    path("api/", include("backend.imaging.urls_imports")),
    path("api/", include("backend.imaging.pacs.urls")),
]

# Under /api/ Django's own errors use the API's error shape too (JSON, never an HTML page).
handler400 = api_bad_request
handler404 = api_not_found
handler500 = api_server_error
