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


def test_reformats_through_the_query_scan_and_their_refusals(tmp_path, settings):
    from tests.browser.data import phantom_hu

    project, annotator, _, ids = annotating_project(tmp_path, settings)
    client = APIClient()
    client.force_authenticate(annotator)
    url = f"/api/projects/{project.id}/queries/{ids[0]}/reformat/"
    hu = phantom_hu()
    response = client.get(url, {"plane": "coronal", "at": 270})
    assert response.status_code == 200 and response["X-Shape"] == "5,512"
    assert "X-Spacing" in response["Access-Control-Expose-Headers"] and len(response["X-Spacing"].split(",")) == 2
    assert (np.frombuffer(response.content, "<i2").reshape(5, 512) == hu[:, 270, :]).all()
    response = client.get(url, {"plane": "sagittal", "at": 170})
    assert (np.frombuffer(response.content, "<i2").reshape(5, 512) == hu[:, :, 170]).all()
    for params, words in (({"plane": "axial", "at": 3}, "not a valid choice"),
                          ({"plane": "coronal", "at": 512}, "outside the scan, whose y runs from 0 to 511"),
                          ({"plane": "sagittal", "at": -1}, "greater than or equal to 0"),
                          ({"plane": "coronal"}, "required")):
        refused = client.get(url, params)
        assert refused.status_code == 400 and words in str(refused.json()), (params, refused.json())
    client.force_authenticate(UserFactory())
    assert client.get(url, {"plane": "coronal", "at": 1}).status_code == 404
