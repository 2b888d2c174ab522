from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("acquisition", "0006_held_out_and_progress")]

    operations = [
        migrations.AddField(model_name="query", name="input_events",
                            field=models.PositiveIntegerField(blank=True, null=True)),
    ]
