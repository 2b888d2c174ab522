"""Template helpers of the pages: what the home page lists for the logged-in user, the window presets."""

from __future__ import annotations

from django import template

from backend.imaging.slices import DEFAULT_PRESET, WINDOW_PRESETS
from backend.projects.access import leads_somewhere, projects_visible_to, role_in, scans_visible_to
from backend.projects.models import ROLE_RANK, Membership

register = template.Library()


@register.simple_tag
def my_projects(user) -> list[dict]:
    """Projects the user belongs to, with the role and which pages the role opens."""
    rows = []
    for project in projects_visible_to(user).order_by("name"):
        role = role_in(user, project)
        rows.append({"project": project, "role": role,
                     "is_lead": ROLE_RANK[role] >= ROLE_RANK[Membership.Role.LEAD]})
    return rows


@register.simple_tag
def my_scans(user, limit: int = 50):
    return scans_visible_to(user).select_related("pool").order_by("pool__name", "name")[:limit]


@register.simple_tag
def leads_a_project(user) -> bool:
    """Whether the pools-and-users page is open to ``user`` (staff, or lead/admin somewhere)."""
    if not user.is_authenticated:
        return False
    return user.is_staff or leads_somewhere(user)


_PRESET_NAMES = {"soft": "Soft tissue", "bone": "Bone"}


@register.inclusion_tag("web/window_presets.html")
def window_presets() -> dict:
    """The window/level buttons, from the one definition the slice endpoints use (``slices.py``)."""
    return {"presets": [{"key": key, "label": _PRESET_NAMES.get(key, key), "window": window, "level": level,
                         "default": key == DEFAULT_PRESET} for key, (window, level) in WINDOW_PRESETS.items()]}
