import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("acquisition", "0005_model_origin"),
        ("imaging", "0002_initial"),
        ("projects", "0002_default_label_set"),
    ]

    operations = [
        migrations.AddField(model_name="acquisitionstep", name="subphase",
                            field=models.CharField(blank=True, max_length=20)),
        migrations.AddField(model_name="acquisitionstep", name="subphase_percent",
                            field=models.FloatField(default=0.0)),
        migrations.AddField(model_name="acquisitionstep", name="subphase_eta_seconds",
                            field=models.FloatField(blank=True, null=True)),
        migrations.AddField(model_name="segmentation", name="percent", field=models.FloatField(default=0.0)),
        migrations.AddField(model_name="segmentation", name="eta_seconds",
                            field=models.FloatField(blank=True, null=True)),
        migrations.AddField(model_name="segmentation", name="started",
                            field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(model_name="segmentation", name="heartbeat",
                            field=models.DateTimeField(blank=True, null=True)),
        migrations.CreateModel(
            name="HeldOutSlice",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("z", models.PositiveIntegerField()),
                ("source", models.CharField(choices=[("reference", "reference label map")], default="reference",
                                            max_length=10)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("project", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                              related_name="held_out_slices", to="projects.project")),
                ("scan", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+",
                                           to="imaging.scan")),
            ],
            options={"ordering": ["project", "scan", "z"]},
        ),
        migrations.AddConstraint(
            model_name="heldoutslice",
            constraint=models.UniqueConstraint(fields=("project", "scan", "z"), name="one_held_out_slice_per_z"),
        ),
    ]
