"""Page views: each checks access through backend.projects.access and hands the page
the little it needs to start (ids, label colours, role); the page then talks to /api/."""

from __future__ import annotations

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.views.generic import TemplateView

from backend.projects.access import Role, project_for, projects_visible_to, role_in, scan_for
from backend.projects.models import ROLE_RANK, Membership, Project


def labels_of(project: Project) -> list[dict]:
    """The project's structures for the palette: value, name, colour, kind, side."""
    return list(project.label_set.labels.order_by("value").values("value", "name", "colour", "kind", "side"))


def project_info(project: Project, user) -> dict:
    return {"id": project.id, "name": project.name, "role": role_in(user, project), "strategy": project.strategy,
            "tau": project.tau, "stop_target_dice": project.stop_target_dice}


class AnnotatorView(LoginRequiredMixin, TemplateView):
    template_name = "web/annotate.html"

    def get_context_data(self, **kwargs):
        project = project_for(self.request.user, kwargs["project_id"])
        page = {"project": project_info(project, self.request.user), "labels": labels_of(project)}
        return super().get_context_data(project=project, page=page, **kwargs)


class DashboardView(LoginRequiredMixin, TemplateView):
    template_name = "web/dashboard.html"

    def get_context_data(self, **kwargs):
        user = self.request.user
        project = project_for(user, kwargs["project_id"], min_role=Role.LEAD)
        # Other projects this lead may compare with (e.g. one run per strategy on the same pool).
        others = [{"id": p.id, "name": p.name, "strategy": p.strategy}
                  for p in projects_visible_to(user).exclude(pk=project.pk).order_by("name")
                  if ROLE_RANK[role_in(user, p)] >= ROLE_RANK[Role.LEAD]]
        page = {"project": project_info(project, user), "labels": labels_of(project), "compare": others}
        return super().get_context_data(project=project, page=page, **kwargs)


def administered_projects(user):
    """Projects where ``user`` is admin (all of them for superusers)."""
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user, memberships__role=Role.ADMIN)


class AdminToolsView(LoginRequiredMixin, TemplateView):
    """Pools, uploads, members and roles; for site staff and project admins/leads."""

    template_name = "web/admin_tools.html"

    def get_context_data(self, **kwargs):
        user = self.request.user
        led = [p for p in projects_visible_to(user).order_by("name")
               if ROLE_RANK[role_in(user, p)] >= ROLE_RANK[Role.LEAD]]
        if not (user.is_staff or led):
            raise PermissionDenied("The administration page is for project leads and administrators.")
        admin_ids = set(administered_projects(user).values_list("id", flat=True))
        projects = [{
            "id": p.id, "name": p.name, "can_manage_members": p.id in admin_ids,
            "labels": labels_of(p) if p.id in admin_ids else [],
            "pools": list(p.pools.values("id", "name")),
            "members": [{"id": m.id, "user": m.user_id, "username": m.user.username, "role": m.role}
                        for m in Membership.objects.filter(project=p).select_related("user").order_by("user__username")],
        } for p in led]
        page = {"projects": projects, "roles": [r.value for r in Role], "is_superuser": user.is_superuser}
        return super().get_context_data(page=page, **kwargs)


class ScanViewerView(LoginRequiredMixin, TemplateView):
    template_name = "web/scan.html"

    def get_context_data(self, **kwargs):
        user = self.request.user
        scan = scan_for(user, kwargs["scan_id"])
        projects = [project_info(p, user) | {"labels": labels_of(p)}
                    for p in projects_visible_to(user).filter(pools=scan.pool).distinct().order_by("name")]
        page = {"scan": {"id": scan.id, "name": scan.name, "pool": scan.pool.name, "shape": list(scan.shape),
                         "spacing": scan.geometry.get("spacing"), "status": scan.status},
                "projects": projects}
        return super().get_context_data(scan=scan, page=page, **kwargs)
