"""Scan.working_grid: which voxels of the original CT the working grid keeps (mltasks.grid).

Scans imported before stay null and keep their resampled 512 x 512 / 1 mm grid; nothing
is recomputed, so every stored volume, label map and annotation stays valid.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('imaging', '0003_scan_uniqueness_upload_quota'),
    ]

    operations = [
        migrations.AddField(
            model_name='scan',
            name='working_grid',
            field=models.JSONField(blank=True, null=True),
        ),
    ]
