from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("acquisition", "0003_step_costs")]

    operations = [
        migrations.AddField(model_name="acquisitionstep", name="guard", field=models.JSONField(blank=True, default=dict)),
        migrations.AddField(model_name="query", name="n_auto_labelled", field=models.PositiveIntegerField(default=0)),
        migrations.AddField(model_name="query", name="n_auto_wrong",
                            field=models.PositiveIntegerField(blank=True, null=True)),
    ]
