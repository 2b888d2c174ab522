"""``manage.py expire_uploads``: fail abandoned chunked uploads and delete their staged files."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from backend.imaging.services_uploads import uploads_expire_stale


class Command(BaseCommand):
    help = ("Fail chunked uploads that received no chunk for --hours (default MYOLABEL_UPLOAD_IDLE_HOURS) "
            "and delete their staged files. New uploads do this too; run it from cron on a quiet server.")

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=float, help="idle time after which an upload is abandoned")

    def handle(self, *args, hours, **options):
        if hours is not None and hours < 0:
            raise CommandError(f"--hours must not be negative, not {hours}")
        expired = uploads_expire_stale(idle=None if hours is None else timedelta(hours=hours))
        self.stdout.write(f"{len(expired)} abandoned upload(s) failed and deleted"
                          + (f": jobs {', '.join(map(str, expired))}" if expired else ""))
