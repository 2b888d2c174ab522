from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("acquisition", "0002_claim_indexes")]

    operations = [
        migrations.AddField(model_name="acquisitionstep", name="costs", field=models.JSONField(blank=True, default=dict)),
    ]
