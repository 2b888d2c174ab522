"""Stored files of deleted rows: removed once the deletion commits; orphans found later.

Every FileField stores into ``default_storage`` (local disk or S3). Deleting a row
with ``delete_with_files`` collects the names of every file of the rows the deletion
cascades to, and deletes those files after the transaction commits: a rollback keeps
rows and files together, and a file another row still names is kept. Deleting through
the storage API (never ``os.remove``) works on S3 too; the local copy an S3 install
caches in ``MYOLABEL_CACHE_DIR`` goes with it.

Imports and training runs write their files before the rows naming them commit, so a
young file without a row may be on its way: ``orphans`` ignores files younger than
``min_age``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import models, router, transaction
from django.db.models.deletion import Collector
from django.utils import timezone

log = logging.getLogger(__name__)

_CHUNK = 500  # names per IN (...): far below SQLite's limit of bound parameters


def _chunks(items: list, size: int = _CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _file_attnames(model: type[models.Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields if isinstance(f, models.FileField)]


def file_fields() -> list[tuple[type[models.Model], str]]:
    """Every (model, FileField column) of the installed apps."""
    return [(model, name) for model in apps.get_models() for name in _file_attnames(model)]


def referenced(names: Iterable[str] | None = None) -> set[str]:
    """The stored names some row refers to, among ``names`` when given."""
    wanted = None if names is None else sorted(set(names))
    found: set[str] = set()
    for model, attname in file_fields():
        rows = model._base_manager.exclude(**{attname: ""})
        if wanted is None:
            found.update(rows.values_list(attname, flat=True).iterator())
            continue
        for chunk in _chunks(wanted):
            found.update(rows.filter(**{f"{attname}__in": chunk}).values_list(attname, flat=True))
    return found


def _collected_names(collector: Collector) -> set[str]:
    names: set[str] = set()
    querysets = [qs for qs in collector.fast_deletes if _file_attnames(qs.model)]
    for model, instances in collector.data.items():
        # Collected instances may have their file columns deferred: read them in one query per chunk.
        pks = [obj.pk for obj in instances]
        if _file_attnames(model) and pks:
            querysets += [model._base_manager.filter(pk__in=chunk) for chunk in _chunks(pks)]
    for qs in querysets:
        for row in qs.values_list(*_file_attnames(qs.model)):
            names.update(name for name in row if name)
    return names


def delete_with_files(obj: models.Model) -> set[str]:
    """Delete ``obj`` as ``obj.delete()`` would, and its cascade's stored files after commit.

    Call inside a transaction; returns the names scheduled for deletion.
    """
    collector = Collector(using=router.db_for_write(type(obj), instance=obj), origin=obj)
    collector.collect([obj])
    names = _collected_names(collector)
    collector.delete()
    delete_after_commit(names)
    return names


def delete_after_commit(names: Iterable[str]) -> None:
    """Delete the stored files ``names`` once the current transaction commits, unless a row names them."""
    names = set(names)
    if names:
        transaction.on_commit(lambda: delete_unreferenced(names), robust=True)


def delete_unreferenced(names: Iterable[str]) -> list[str]:
    """Delete the stored files among ``names`` that no row refers to; return the deleted names."""
    keep = referenced(names)
    deleted = []
    for name in sorted(set(names) - keep):
        try:
            default_storage.delete(name)
        except Exception:  # one unreachable file must not keep the others on disk
            log.exception("could not delete stored file %s; `manage.py orphan_files` lists it", name)
            continue
        (Path(settings.MYOLABEL_CACHE_DIR) / "storage" / name).unlink(missing_ok=True)
        deleted.append(name)
    return deleted


# --- orphans ---------------------------------------------------------------------------------


def _walk(folder: str = "") -> Iterator[str]:
    try:
        dirs, files = default_storage.listdir(folder)
    except FileNotFoundError:  # a media folder nothing was ever stored in
        return
    for name in files:
        yield f"{folder}/{name}" if folder else name
    for name in dirs:
        yield from _walk(f"{folder}/{name}" if folder else name)


def orphans(*, min_age: timedelta) -> list[str]:
    """Stored files no row refers to and older than ``min_age``, sorted."""
    known = referenced()
    cutoff: datetime = timezone.now() - min_age
    found = []
    for name in _walk():
        if name not in known and (min_age <= timedelta(0) or default_storage.get_modified_time(name) <= cutoff):
            found.append(name)
    return sorted(found)
