"""Reads of projects, memberships and label sets for the API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Count, Prefetch, QuerySet

from backend.projects.access import projects_visible_to
from backend.projects.models import Label, LabelSet, Membership, Project

if TYPE_CHECKING:  # annotations only
    from django.contrib.auth.models import User


def projects_for_listing(user: User) -> QuerySet[Project]:
    return (projects_visible_to(user).distinct().select_related("label_set")
            .prefetch_related("pools", "test_scans").order_by("name"))


def roles_by_project(user: User) -> dict[int, str]:
    """``{project_id: role}`` of ``user``; superusers count as admin everywhere (see ``role_of``)."""
    return dict(Membership.objects.filter(user=user).values_list("project_id", "role"))


def role_of(user: User, project: Project, roles: dict[int, str]) -> str:
    return Membership.Role.ADMIN if user.is_superuser else roles.get(project.pk, "")


def project_members(project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("user__username")


def member_of(project: Project, user_id: int) -> Membership | None:
    return project.memberships.select_related("user", "project").filter(user_id=user_id).first()


def label_sets() -> QuerySet[LabelSet]:
    return (LabelSet.objects.annotate(n_labels=Count("labels"))
            .prefetch_related(Prefetch("labels", queryset=Label.objects.select_related("pair")))
            .order_by("name"))
