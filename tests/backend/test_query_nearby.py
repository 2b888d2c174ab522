"""The labelled slices around a query: nearest below and above, never held out, only the caller's project."""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from backend.acquisition import codec
from backend.acquisition.models import HeldOutSlice, Query, TrainingSlice
from tests.backend.factories import UserFactory
from tests.browser.data import annotating_project

pytestmark = pytest.mark.django_db


def test_nearest_labelled_slices_each_side_without_held_out_ones(tmp_path, settings):
    project, annotator, _, ids = annotating_project(tmp_path, settings)
    query = Query.objects.get(pk=ids[0])  # z 2 of a 5-slice scan
    for z in (0, 1, 4):
        labels = np.full((512, 512), z + 1, np.uint8)
        TrainingSlice.objects.create(project=project, scan=query.scan, z=z, height=512, width=512,
                                     labels=codec.pack_labels(labels), answered=codec.pack_mask(labels > 0),
                                     source=TrainingSlice.Source.QUERY)
    HeldOutSlice.objects.create(project=project, scan=query.scan, z=1)
    client = APIClient()
    client.force_authenticate(annotator)
    url = f"/api/projects/{project.id}/queries/{query.id}/nearby/"
    rows = client.get(url).json()
    assert [(r["z"], r["source"]) for r in rows] == [(0, "query"), (4, "query")]
    labels = codec.unpack_labels(codec.unb64(rows[1]["labels"]), (512, 512))
    assert (labels == 5).all()
    stranger = UserFactory()
    client.force_authenticate(stranger)
    assert client.get(url).status_code == 404
