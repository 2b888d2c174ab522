from django.urls import path

from backend.projects.apis import (
    LabelSetDetailApi,
    LabelSetListApi,
    ProjectDetailApi,
    ProjectListApi,
    ProjectMemberDetailApi,
    ProjectMemberListApi,
)

urlpatterns = [
    path("projects/", ProjectListApi.as_view(), name="project-list"),
    path("projects/<int:project_id>/", ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<int:project_id>/members/", ProjectMemberListApi.as_view(), name="project-members"),
    path("projects/<int:project_id>/members/<int:user_id>/", ProjectMemberDetailApi.as_view(),
         name="project-member-detail"),
    path("label-sets/", LabelSetListApi.as_view(), name="label-set-list"),
    path("label-sets/<int:label_set_id>/", LabelSetDetailApi.as_view(), name="label-set-detail"),
]
