"""Scans unique by series UID and by pixel data in the database; long original names; upload quotas;
imports kept for a retry when the task queue was down.

Scans imported twice before this migration (two imports that raced past the
importer's check) are kept: every copy after the first is marked
``legacy_duplicate`` and left out of the new constraints, with a line in its
import log, so that no annotated scan is lost by upgrading.
"""

from django.conf import settings
from django.db import migrations, models
from django.db.models import Count

_NOTE = "\nmarked as a duplicate of scan {first} (same {what}) when the database began to enforce uniqueness"


def mark_legacy_duplicates(apps, schema_editor) -> None:
    Scan = apps.get_model("imaging", "Scan")
    for field, what, exclude in (("series_uid", "series", {"series_uid": ""}),
                                 ("content_hash", "pixel data", {"source_format": "phantom"})):
        fresh = Scan.objects.filter(legacy_duplicate=False).exclude(**exclude)
        repeated = fresh.values(field).annotate(n=Count("id")).filter(n__gt=1).values_list(field, flat=True)
        for value in repeated:
            first, *later = fresh.filter(**{field: value}).order_by("created", "id")
            for scan in later:
                scan.legacy_duplicate = True
                scan.import_log += _NOTE.format(first=first.pk, what=what)
                scan.save(update_fields=["legacy_duplicate", "import_log"])


class Migration(migrations.Migration):

    dependencies = [
        ('imaging', '0002_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='importjob',
            name='declared_bytes',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='importjob',
            name='awaiting_retry',
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name='scan',
            name='legacy_duplicate',
            field=models.BooleanField(default=False),
        ),
        migrations.AlterField(
            model_name='referencelabelmap',
            name='source_name',
            field=models.TextField(blank=True),
        ),
        migrations.AlterField(
            model_name='scanfile',
            name='original_name',
            field=models.TextField(),
        ),
        migrations.RunPython(mark_legacy_duplicates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='scan',
            constraint=models.UniqueConstraint(condition=models.Q(models.Q(('series_uid', ''), _negated=True), ('legacy_duplicate', False)), fields=('series_uid',), name='scan_series_uid_unique'),
        ),
        migrations.AddConstraint(
            model_name='scan',
            constraint=models.UniqueConstraint(condition=models.Q(models.Q(('source_format', 'phantom'), _negated=True), ('legacy_duplicate', False)), fields=('content_hash',), name='scan_content_hash_unique'),
        ),
    ]
