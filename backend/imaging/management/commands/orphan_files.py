"""``manage.py orphan_files [--delete]``: stored files and staging folders no row refers to."""

from __future__ import annotations

import shutil
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from backend.core.file_cleanup import delete_unreferenced, orphans
from backend.imaging.staging import orphan_staging_folders


class Command(BaseCommand):
    help = ("List the stored files (scans, originals, label maps, models, segmentations; local disk or S3) and "
            "the import staging folders that no row refers to; --delete removes them. Files younger than "
            "--min-age hours are left alone: an import or a training run writes its files before its rows.")

    def add_arguments(self, parser):
        parser.add_argument("--delete", action="store_true", help="remove the orphans (default: only list them)")
        parser.add_argument("--min-age", type=float, default=24.0,
                            help="hours since a file was written before it counts as orphaned (default 24)")

    def handle(self, *args, delete: bool, min_age: float, **options):
        if min_age < 0:
            raise CommandError(f"--min-age must not be negative, not {min_age}")
        age = timedelta(hours=min_age)
        files, folders = orphans(min_age=age), orphan_staging_folders(min_age=age)
        for name in files:
            self.stdout.write(f"file {name}")
        for folder in folders:
            self.stdout.write(f"staging {folder}")
        if not delete:
            self.stdout.write(f"{len(files)} orphaned file(s), {len(folders)} orphaned staging folder(s); "
                              "run with --delete to remove them")
            return
        # delete_unreferenced looks the rows up again: a row made since the scan keeps its file.
        deleted = delete_unreferenced(files)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        kept = len(files) - len(deleted)
        self.stdout.write(f"{len(deleted)} orphaned file(s) and {len(folders)} staging folder(s) deleted"
                          + (f"; {kept} kept (a row names them now, or see the log)" if kept else ""))
