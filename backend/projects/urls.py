from django.urls import path

import backend.core.ids  # noqa: F401  (registers the <id:...> converter)
from backend.projects.apis import (
    LabelSetDetailApi,
    LabelSetListApi,
    ProjectDetailApi,
    ProjectLabelApi,
    ProjectListApi,
    ProjectMemberDetailApi,
    ProjectMemberListApi,
)

urlpatterns = [
    path("projects/", ProjectListApi.as_view(), name="project-list"),
    path("projects/<id:project_id>/", ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<id:project_id>/members/", ProjectMemberListApi.as_view(), name="project-members"),
    path("projects/<id:project_id>/members/<id:user_id>/", ProjectMemberDetailApi.as_view(),
         name="project-member-detail"),
    path("projects/<id:project_id>/labels/<int:value>/", ProjectLabelApi.as_view(), name="project-label"),
    path("label-sets/", LabelSetListApi.as_view(), name="label-set-list"),
    path("label-sets/<id:label_set_id>/", LabelSetDetailApi.as_view(), name="label-set-detail"),
]
