from django.db import migrations, models


def trained(apps, schema_editor):
    # Every model before this migration was trained by a step: the loop was the only way in.
    apps.get_model("acquisition", "ModelVersion").objects.update(origin={"kind": "trained"})


class Migration(migrations.Migration):
    dependencies = [("acquisition", "0004_step_guard")]

    operations = [
        migrations.AddField(model_name="modelversion", name="origin", field=models.JSONField(blank=True, default=dict)),
        migrations.RunPython(trained, migrations.RunPython.noop),
    ]
