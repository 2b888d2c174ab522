"""Writes of pools: create, rename, delete (with everything made from their scans, files included).

Who may: ``backend.projects.access`` (a pool as a whole belongs to the admins of every
project using it: ``administers_pool``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction

from backend.core.file_cleanup import delete_with_files
from backend.core.names import check_unique_name
from backend.imaging.models import Pool
from backend.imaging.staging import remove_staging_after_commit
from backend.projects import access
from backend.projects.models import Project

if TYPE_CHECKING:  # annotations only
    from django.contrib.auth.models import User


@transaction.atomic
def pool_create(*, project: Project, user: User, name: str, description: str = "") -> Pool:
    """Create an empty pool and add it to ``project``."""
    check_unique_name(Pool, name, exclude_pk=None)
    pool = Pool.objects.create(name=name, description=description, created_by=user)
    project.pools.add(pool)
    return pool


@transaction.atomic
def pool_update(*, pool: Pool, **fields) -> Pool:
    if "name" in fields:
        check_unique_name(Pool, fields["name"], exclude_pk=pool.pk)
    for name, value in fields.items():
        setattr(pool, name, value)
    pool.save()
    return pool


@transaction.atomic
def pool_delete(*, pool: Pool, user: User) -> None:
    """Delete a pool with its scans and everything made from them, files included (after commit).

    Only a superuser, or an admin of every project using the pool, may.
    """
    if not access.administers_pool(user, pool):
        msg = ("This pool is also used by projects in which you are not an admin; ask their admins to remove "
               "it from those projects, or a site administrator to delete it.")
        raise ValidationError({"pool": [msg]})
    staging = list(pool.import_jobs.values_list("staging_dir", flat=True))
    delete_with_files(pool)
    remove_staging_after_commit(staging)
