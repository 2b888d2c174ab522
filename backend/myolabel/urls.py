"""Top-level URLs: API under /api/, docs under /api/docs/, pages from frontend."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from backend.core.auth_apis import TokenObtainApi
from backend.core.views import HomeView

urlpatterns = [
    path("", HomeView.as_view(), name="home"),
    path("admin/", admin.site.urls),
    path("", include("backend.web.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("api/", include("backend.core.urls")),
    path("api/auth/token/", TokenObtainApi.as_view(), name="auth-token"),
    path("api/", include("backend.projects.urls")),
    path("api/", include("backend.imaging.urls")),
    path("api/", include("backend.acquisition.urls")),
    path("api/", include("backend.imaging.upload_urls")),
]
