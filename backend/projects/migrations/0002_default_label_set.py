"""The default label set of method.md §7 (left and right share a value, as in the paper)."""

from django.db import migrations

from mltasks.labels import default_label_set

NAME = "Hip and thigh (Hiasa 2019)"


def create(apps, schema_editor):
    LabelSet = apps.get_model("projects", "LabelSet")
    Label = apps.get_model("projects", "Label")
    label_set, _ = LabelSet.objects.get_or_create(
        name=NAME, defaults={"description": "3 bones and 19 muscles of hip and thigh; left and right share a value."})
    for lab in default_label_set().labels:
        Label.objects.get_or_create(label_set=label_set, value=lab.value,
                                    defaults={"name": lab.name, "kind": lab.kind, "colour": lab.colour})


def remove(apps, schema_editor):
    apps.get_model("projects", "LabelSet").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("projects", "0001_initial")]
    operations = [migrations.RunPython(create, remove)]
