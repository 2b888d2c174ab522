"""The default label set's colours (projects migration 0003): well separated, an admin's own colour kept."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from django.apps import apps

from backend.projects.models import Label, LabelSet
from mltasks.labels import default_label_set

recolour = importlib.import_module("backend.projects.migrations.0003_separated_colours")


def lab(hex_colour: str) -> np.ndarray:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
    f = np.cbrt(np.maximum(xyz / np.array([0.95047, 1.0, 1.08883]), 0.008856))
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_every_two_new_colours_are_at_least_30_cielab_units_apart():
    new = [colours[1] for colours in recolour.COLOURS.values()]
    assert len(set(new)) == 22 and set(recolour.COLOURS) == {lab_.name for lab_ in default_label_set().labels}
    points = np.array([lab(c) for c in new])
    distance = np.linalg.norm(points[:, None] - points[None], axis=2) + np.eye(22) * 1e3
    assert distance.min() >= 30
    for avoided in ("#ffff00", "#ff00ff"):  # the query outline, the uncertainty map
        assert np.linalg.norm(points - lab(avoided), axis=1).min() >= 30


@pytest.mark.django_db
def test_the_migration_recolours_the_default_set_but_keeps_an_admins_colour():
    LabelSet.objects.filter(name=recolour.NAME).delete()
    ls = LabelSet.objects.create(name=recolour.NAME)
    for lab_ in default_label_set().labels:
        Label.objects.create(label_set=ls, value=lab_.value, name=lab_.name, kind=lab_.kind, colour=lab_.colour)
    Label.objects.filter(label_set=ls, name="femur").update(colour="#123456")  # an admin chose this one
    recolour.forward(apps, None)
    colours = dict(Label.objects.filter(label_set=ls).values_list("name", "colour"))
    assert colours["gluteus_maximus"] == "#ee4444" and colours["femur"] == "#123456"
    recolour.backward(apps, None)
    assert Label.objects.get(label_set=ls, name="gluteus_maximus").colour == "#e6194b"


@pytest.mark.django_db
def test_an_admin_recolours_a_structure_of_the_projects_set_and_bad_requests_store_nothing():
    from rest_framework.test import APIClient

    from backend.projects.models import Membership
    from tests.backend.factories import LabelSetFactory, MembershipFactory, ProjectFactory

    label_set = LabelSetFactory(labels__n=2)
    project = ProjectFactory(label_set=label_set)
    admin = MembershipFactory(project=project, role=Membership.Role.ADMIN).user
    lead = MembershipFactory(project=project, role=Membership.Role.LEAD).user
    client = APIClient()
    url = f"/api/projects/{project.id}/labels/1/"
    before = Label.objects.get(label_set=label_set, value=1).colour

    client.force_authenticate(lead)
    assert client.patch(url, {"colour": "#123456"}, format="json").status_code == 403
    client.force_authenticate(admin)
    for body, status, words in (({"colour": "red"}, 400, "#rrggbb"), ({"colour": "#12345"}, 400, "#rrggbb"),
                                ({}, 400, "required")):
        response = client.patch(url, body, format="json")
        assert response.status_code == status and words in str(response.json()), response.json()
    missing = client.patch(f"/api/projects/{project.id}/labels/99/", {"colour": "#123456"}, format="json")
    assert missing.status_code == 404 and "no structure of value 99" in missing.json()["detail"]
    assert Label.objects.get(label_set=label_set, value=1).colour == before

    response = client.patch(url, {"colour": "#ABCDEF"}, format="json")
    assert response.status_code == 200 and response.json()["colour"] == "#abcdef"
    assert Label.objects.get(label_set=label_set, value=1).colour == "#abcdef"

    ProjectFactory(label_set=label_set, name="Someone else's study")  # the set is now shared
    shared = client.patch(url, {"colour": "#000000"}, format="json")
    assert shared.status_code == 403 and "Someone else's study" in shared.json()["detail"]
    assert Label.objects.get(label_set=label_set, value=1).colour == "#abcdef"
