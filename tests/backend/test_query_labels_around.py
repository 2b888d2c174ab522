"""The labels around a query, read only: the model's prediction of a neighbouring slice (the project's
newest finished segmentation of the scan, else the step's stored prediction) and the label rows of the
coronal and sagittal planes; only the caller's project, every bad input refused with its reason."""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from backend.acquisition import codec
from backend.acquisition.models import (
    HeldOutSlice,
    ModelVersion,
    Query,
    Segmentation,
    TrainingSlice,
)
from backend.imaging.models import ReferenceLabelMap
from backend.imaging.volumes import save_array
from backend.projects.models import Membership
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
    segmentation_with_uncertainty,
)
from tests.browser.data import SIZE, annotating_project, query_rasters

pytestmark = pytest.mark.django_db


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _labels(text: str, shape=(SIZE, SIZE)) -> np.ndarray:
    return codec.unpack_labels(codec.unb64(text), shape)


def _segmentation(project, scan, labels) -> Segmentation:
    """A finished segmentation of ``scan`` with ``labels`` (z, y, x) by a new model version."""
    seg = segmentation_with_uncertainty(project, scan, np.zeros(labels.shape, np.float16))
    seg.labels = save_array(labels.astype(np.uint8), "acquisition/segmentations/labels.npy")
    seg.save()
    return seg


def test_a_neighbouring_slice_shows_the_step_prediction_where_it_stored_one(tmp_path, settings):
    project, annotator, _, ids = annotating_project(tmp_path, settings)
    url = f"/api/projects/{project.id}/queries/{ids[0]}/slice-labels/"
    client = _client(annotator)
    found = client.get(url, {"z": 3}).json()  # the step's other query
    assert found["source"] == {"kind": "step", "model": None, "step": 1,
                               "description": "step 1's prediction (stored for its queried slices only)"}
    assert (_labels(found["predicted"]) == query_rasters(3)[1]).all()
    assert found["labelled"] is None and found["labelled_source"] is None
    assert client.get(url, {"z": 1}).json()["predicted"] is None  # nothing predicted there: the page says so


def test_a_cold_start_query_predicts_nothing(tmp_path, settings):
    project, annotator, _, ids = annotating_project(tmp_path, settings)
    Query.objects.filter(pk=ids[1]).update(predicted=codec.pack_labels(np.full((SIZE, SIZE), 255, np.uint8)))
    found = _client(annotator).get(f"/api/projects/{project.id}/queries/{ids[0]}/slice-labels/", {"z": 3}).json()
    assert found["predicted"] is None


def test_the_newest_finished_segmentation_of_the_scan_wins_over_the_step(tmp_path, settings):
    project, annotator, _, ids = annotating_project(tmp_path, settings)
    scan = Query.objects.get(pk=ids[0]).scan
    _segmentation(project, scan, np.full((5, SIZE, SIZE), 2, np.uint8))
    _segmentation(project, scan, np.full((5, SIZE, SIZE), 4, np.uint8))  # model 2: the newest
    segmentation_with_uncertainty(project, scan, np.zeros((5, SIZE, SIZE)))  # model 3, no labels: not a source
    found = _client(annotator).get(f"/api/projects/{project.id}/queries/{ids[0]}/slice-labels/", {"z": 1}).json()
    assert found["source"] == {"kind": "segmentation", "model": 2, "step": None,
                               "description": "model 2's segmentation of this scan"}
    assert (_labels(found["predicted"]) == 4).all()
    assert ModelVersion.objects.filter(project=project).count() == 3


def test_bad_slices_are_refused_with_the_valid_range(tmp_path, settings):
    project, annotator, _, ids = annotating_project(tmp_path, settings)
    url = f"/api/projects/{project.id}/queries/{ids[0]}/slice-labels/"
    client = _client(annotator)
    for params, words in (({"z": 5}, "slice 5 is outside the scan, whose z runs from 0 to 4"),
                          ({"z": -1}, "greater than or equal to 0"),
                          ({"z": "two"}, "A valid integer is required"),
                          ({}, "This field is required")):
        refused = client.get(url, params)
        assert refused.status_code == 400 and words in str(refused.json()), (params, refused.json())


def test_a_neighbouring_slice_shows_labels_by_the_rule_of_the_reformats(tmp_path, settings):
    project, annotator, _, ids = annotating_project(tmp_path, settings)
    query = Query.objects.get(pk=ids[0])  # z 2
    reference = np.full((5, SIZE, SIZE), 6, np.uint8)
    ReferenceLabelMap.objects.create(scan=query.scan, label_set=project.label_set, labelled_slices=[0, 1, 4],
                                     labels=save_array(reference, "labels/ref.npy"))
    ReferenceLabelMap.objects.create(scan=query.scan, label_set=LabelSetFactory(), labelled_slices=[3],
                                     labels=save_array(reference + 1, "labels/other.npy"))  # another label set
    labels = np.full((SIZE, SIZE), 3, np.uint8)
    TrainingSlice.objects.create(project=project, scan=query.scan, z=4, height=SIZE, width=SIZE,
                                 labels=codec.pack_labels(labels), answered=codec.pack_mask(labels > 0),
                                 source=TrainingSlice.Source.QUERY)
    HeldOutSlice.objects.create(project=project, scan=query.scan, z=0)
    client = _client(annotator)
    url = f"/api/projects/{project.id}/queries/{query.id}/slice-labels/"
    seen = {z: client.get(url, {"z": z}).json() for z in (0, 1, 3, 4)}
    assert seen[0]["labelled"] is None, "a held-out slice's labels must not be shown"
    assert seen[1]["labelled_source"] == "reference" and (_labels(seen[1]["labelled"]) == 6).all()
    assert seen[3]["labelled"] is None, "another label set's reference is not the project's"
    assert seen[4]["labelled_source"] == "query" and (_labels(seen[4]["labelled"]) == 3).all()


def test_reformat_labels_give_labelled_rows_without_held_out_ones_and_predicted_rows(tmp_path, settings):
    project, annotator, _, ids = annotating_project(tmp_path, settings)
    query = Query.objects.get(pk=ids[0])
    reference = np.zeros((5, SIZE, SIZE), np.uint8)
    reference[:, :, 100:200] = 6
    ReferenceLabelMap.objects.create(scan=query.scan, label_set=project.label_set, labelled_slices=[0, 1, 4],
                                     labels=save_array(reference, "labels/ref.npy"))
    for z, value in ((4, 3), (0, 2)):
        labels = np.full((SIZE, SIZE), value, np.uint8)
        TrainingSlice.objects.create(project=project, scan=query.scan, z=z, height=SIZE, width=SIZE,
                                     labels=codec.pack_labels(labels), answered=codec.pack_mask(labels > 0),
                                     source=TrainingSlice.Source.QUERY)
    HeldOutSlice.objects.create(project=project, scan=query.scan, z=0)
    url = f"/api/projects/{project.id}/queries/{query.id}/reformat/labels/"
    found = _client(annotator).get(url, {"plane": "sagittal", "at": 150}).json()
    assert found["shape"] == [5, SIZE]
    assert found["labelled_rows"] == [{"z": 1, "source": "reference"}, {"z": 4, "source": "query"}]
    labelled = _labels(found["labelled"], (5, SIZE))
    assert (labelled[1] == 6).all() and (labelled[4] == 3).all()  # the training set before the reference
    assert (labelled[[0, 2, 3]] == 255).all()  # held out, or nobody labelled it
    assert found["predicted_rows"] == [2, 3] and found["source"]["kind"] == "step"
    predicted = _labels(found["predicted"], (5, SIZE))
    assert (predicted[2] == query_rasters(2)[1][:, 150]).all() and (predicted[[0, 1, 4]] == 255).all()
    coronal = _client(annotator).get(url, {"plane": "coronal", "at": 300}).json()
    assert (_labels(coronal["predicted"], (5, SIZE))[3] == query_rasters(3)[1][300, :]).all()


def test_reformat_labels_from_a_segmentation_cover_every_row(tmp_path, settings):
    project, annotator, _, ids = annotating_project(tmp_path, settings)
    scan = Query.objects.get(pk=ids[0]).scan
    volume = np.zeros((5, SIZE, SIZE), np.uint8)
    volume[:, 250:260, :] = 5
    _segmentation(project, scan, volume)
    found = _client(annotator).get(f"/api/projects/{project.id}/queries/{ids[0]}/reformat/labels/",
                                   {"plane": "sagittal", "at": 10}).json()
    assert found["predicted_rows"] == [0, 1, 2, 3, 4] and found["source"]["model"] == 1
    predicted = _labels(found["predicted"], (5, SIZE))
    assert (predicted[:, 250:260] == 5).all() and (predicted[:, :250] == 0).all()


def test_bad_reformat_label_requests_are_refused_with_their_reason(tmp_path, settings):
    project, annotator, _, ids = annotating_project(tmp_path, settings)
    url = f"/api/projects/{project.id}/queries/{ids[0]}/reformat/labels/"
    client = _client(annotator)
    for params, words in (({"plane": "axial", "at": 3}, "not a valid choice"),
                          ({"plane": "coronal", "at": 512}, "outside the scan, whose y runs from 0 to 511"),
                          ({"plane": "sagittal", "at": 600}, "outside the scan, whose x runs from 0 to 511"),
                          ({"plane": "sagittal", "at": -1}, "greater than or equal to 0"),
                          ({"plane": "coronal"}, "This field is required")):
        refused = client.get(url, params)
        assert refused.status_code == 400 and words in str(refused.json()), (params, refused.json())


@pytest.mark.parametrize("path", ["slice-labels/?z=1", "reformat/labels/?plane=coronal&at=1"])
def test_an_annotator_of_another_project_gets_404(tmp_path, settings, path):
    project, _, _, ids = annotating_project(tmp_path, settings)
    membership = MembershipFactory(project=ProjectFactory(), role=Membership.Role.ANNOTATOR)
    other = membership.user
    url = f"/api/projects/{project.id}/queries/{ids[0]}/{path}"
    assert _client(other).get(url).status_code == 404
    # Through their own project: the query is not one of its queries.
    assert _client(other).get(f"/api/projects/{membership.project_id}/queries/{ids[0]}/{path}").status_code == 404
    assert _client(UserFactory()).get(url).status_code == 404
    assert APIClient().get(url).status_code in (401, 403)
