"""The default label set's colours, re-chosen so that every two structures are at least 30 CIELAB
units apart (greedy farthest-point choice among saturated colours of mid lightness), none near the
query outline's yellow or the uncertainty map's magenta. A colour an admin has changed stays."""

from django.db import migrations

NAME = "Hip and thigh (Hiasa 2019)"

# name: (colour of 0002, new colour)
COLOURS = {
    "pelvis": ("#e8e3c9", "#ccdd99"), "femur": ("#fff2a8", "#ffbbff"), "sacrum": ("#c9b98b", "#ccaa44"),
    "gluteus_maximus": ("#e6194b", "#ee4444"), "gluteus_medius": ("#3cb44b", "#00ff00"),
    "gluteus_minimus": ("#4363d8", "#4455ff"), "iliacus": ("#f58231", "#ffaa00"),
    "obturator_externus": ("#911eb4", "#8855bb"), "obturator_internus": ("#46f0f0", "#44eeff"),
    "pectineus": ("#f032e6", "#ff00bb"), "piriformis": ("#bcf60c", "#aadd33"),
    "psoas_major": ("#fabebe", "#dd9977"), "adductors": ("#008080", "#338866"),
    "biceps_femoris": ("#e6beff", "#dd66ff"), "gracilis": ("#9a6324", "#aa5500"),
    "rectus_femoris": ("#800000", "#bb4477"), "sartorius": ("#aaffc3", "#00dd88"),
    "semimembranosus": ("#808000", "#667700"), "semitendinosus": ("#ffd8b1", "#ff6600"),
    "tensor_fasciae_latae": ("#000075", "#0077bb"), "vastus_lateralis_intermedius": ("#ff6f00", "#ff0077"),
    "vastus_medialis": ("#00b3ff", "#009900"),
}


def _recolour(apps, old_index: int, new_index: int) -> None:
    Label = apps.get_model("projects", "Label")
    for name, colours in COLOURS.items():
        Label.objects.filter(label_set__name=NAME, name=name, colour__iexact=colours[old_index]).update(
            colour=colours[new_index])


def forward(apps, schema_editor):
    _recolour(apps, 0, 1)


def backward(apps, schema_editor):
    _recolour(apps, 1, 0)


class Migration(migrations.Migration):
    dependencies = [("projects", "0002_default_label_set")]
    operations = [migrations.RunPython(forward, backward)]
