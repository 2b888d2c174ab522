"""``/ws/projects/<id>/``: live events of one project (acquisition progress, imports)."""

from __future__ import annotations

from channels.db import database_sync_to_async

from backend.core.consumers import GroupEventsConsumer
from backend.core.realtime import project_group
from backend.projects.access import role_in
from backend.projects.models import Project


@database_sync_to_async
def _member_of(user, project_id: int) -> bool:
    project = Project.objects.filter(pk=project_id).first()
    return project is not None and role_in(user, project) is not None


class ProjectEventsConsumer(GroupEventsConsumer):
    async def groups_for(self, user) -> list[str] | None:
        project_id = int(self.scope["url_route"]["kwargs"]["project_id"])
        return [project_group(project_id)] if await _member_of(user, project_id) else None
