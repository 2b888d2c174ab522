"""Who may see and do what: every API view fetches its objects through these functions.

Rules: a user sees a project only through a Membership (site superusers see all).
Pools and scans are seen through the projects that use them. Anything a user may not
see is reported as missing (404), so nobody learns that a foreign project or scan
exists; a member whose role is too low for an action gets 403.

A pool as a whole (deleting it, attaching it to another project) belongs to the admins
of the projects using it: only a user who is admin of every one of them, or a superuser,
may do that (``administers_pool``). A pool no project uses belongs to the site alone.
"""

from __future__ import annotations

from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from backend.imaging.models import Pool, Scan
from backend.projects.models import ROLE_RANK, Membership, Project

Role = Membership.Role


def projects_visible_to(user) -> QuerySet[Project]:
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user)


def role_in(user, project: Project) -> str | None:
    """The user's role in ``project`` (superusers count as admin), or None."""
    if user.is_superuser:
        return Role.ADMIN
    membership = Membership.objects.filter(project=project, user=user).only("role").first()
    return membership.role if membership else None


def _require(role: str | None, min_role: str, what: str) -> None:
    if role is None:
        raise Http404(f"No {what} matches the given query.")
    if ROLE_RANK[role] < ROLE_RANK[min_role]:
        raise PermissionDenied(f"This needs the {min_role} role or higher; you are {role}.")


def project_for(user, project_id: int, *, min_role: str = Role.ANNOTATOR) -> Project:
    """The project if ``user`` is a member with at least ``min_role``; 404 or 403 otherwise."""
    if user.is_superuser:
        project = Project.objects.filter(pk=project_id).first()
        _require(Role.ADMIN if project else None, min_role, "project")
        return project
    # One query for project and role: every API call of an annotator starts here.
    membership = Membership.objects.select_related("project").filter(project_id=project_id, user=user).first()
    _require(membership.role if membership else None, min_role, "project")
    return membership.project


def best_role_for_pool(user, pool: Pool) -> str | None:
    if user.is_superuser:
        return Role.ADMIN
    roles = Membership.objects.filter(user=user, project__pools=pool).values_list("role", flat=True)
    return max(roles, key=ROLE_RANK.__getitem__, default=None)


# Adding a member answers whether a user name exists; a project admin (anyone may create a
# project) gets this many "no such user" answers per window, then every add waits (429).
UNKNOWN_USERNAMES_PER_HOUR = 20
UNKNOWN_USERNAMES_WINDOW = 3600  # seconds


def unknown_usernames_key(user) -> str:
    # date_joined too: SQLite reuses the id of a deleted account, and the new one starts afresh.
    return f"myolabel:unknown-usernames:{user.pk}:{user.date_joined.timestamp():.6f}"


def username_lookups_exhausted(user) -> bool:
    """True once ``user`` named too many users that do not exist in the current window (never for superusers)."""
    if user.is_superuser:
        return False
    return (cache.get(unknown_usernames_key(user)) or 0) >= UNKNOWN_USERNAMES_PER_HOUR


def administers_pool(user, pool: Pool) -> bool:
    """True when ``user`` is a superuser, or admin of every project using ``pool`` (and one uses it).

    Written positively on purpose: ``exclude(memberships__user=..., memberships__role=...)``
    spans two memberships and so excludes a project where the user is annotator and
    somebody else is admin.
    """
    if user.is_superuser:
        return True
    using = Project.objects.filter(pools=pool)
    administered = Membership.objects.filter(user=user, role=Role.ADMIN).values("project_id")
    return using.exists() and not using.exclude(pk__in=administered).exists()


def leads_somewhere(user) -> bool:
    """True when ``user`` may import into some pool (lead or admin of a project, or superuser)."""
    return user.is_superuser or Membership.objects.filter(user=user, role__in=(Role.LEAD, Role.ADMIN)).exists()


def pools_visible_to(user) -> QuerySet[Pool]:
    if user.is_superuser:
        return Pool.objects.all()
    return Pool.objects.filter(projects__memberships__user=user).distinct()


def pool_for(user, pool_id: int, *, min_role: str = Role.ANNOTATOR) -> Pool:
    pool = Pool.objects.filter(pk=pool_id).first()
    _require(best_role_for_pool(user, pool) if pool else None, min_role, "pool")
    return pool


def scans_visible_to(user) -> QuerySet[Scan]:
    if user.is_superuser:
        return Scan.objects.all()
    return Scan.objects.filter(pool__projects__memberships__user=user).distinct()


def scan_for(user, scan_id: int, *, min_role: str = Role.ANNOTATOR) -> Scan:
    scan = Scan.objects.select_related("pool").filter(pk=scan_id).first()
    _require(best_role_for_pool(user, scan.pool) if scan else None, min_role, "scan")
    return scan
