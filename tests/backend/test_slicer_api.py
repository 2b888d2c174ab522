"""3D Slicer round trip through the API: .seg.nrrd out, the same file in as reference labels."""

from __future__ import annotations

import io

import nrrd
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from backend.imaging.models import ReferenceLabelMap
from backend.imaging.volumes import reference_labels
from backend.projects.models import Label, LabelSet
from tests.backend.biomech_world import GEOMETRY, client, segmented, url, volumes, world
from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    stored_files,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def w(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)
    return {**world(), "media": tmp_path / "media"}


def post(user, project, scan, content: bytes, *, name="labels.seg.nrrd", **extra):
    body = {"scan_id": scan.pk, "file": SimpleUploadedFile(name, content), **extra}
    return client(user).post(f"/api/projects/{project.pk}/references/seg-nrrd/", body, format="multipart")


def header_of(content: bytes) -> dict:
    return nrrd.read_header(io.BytesIO(content))


def test_the_download_is_a_slicer_segmentation_of_the_labels(w):
    response = client(w["annotator"]).get(url(w["seg"], "labels.seg.nrrd"))
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith(f'-scan-{w["seg"].scan_id}.seg.nrrd"')
    header = header_of(response.content)
    assert header["space"] == "left-posterior-superior"
    np.testing.assert_allclose(header["space origin"], GEOMETRY.origin)
    np.testing.assert_allclose(np.diag(header["space directions"]), GEOMETRY.spacing[::-1])
    names = [(header[f"Segment{k}_Name"], header[f"Segment{k}_LabelValue"], header[f"Segment{k}_Color"])
             for k in range(3)]
    assert names == [("psoas_left", "1", "1 0 0"), ("psoas_right", "2", "0 1 0"), ("femur", "3", "1 1 0")]


def test_export_then_import_gives_back_the_same_labels(w):
    content = client(w["lead"]).get(url(w["seg"], "labels.seg.nrrd")).content
    response = post(w["lead"], w["project"], w["seg"].scan, content)
    assert response.status_code == 201, response.content
    assert response.json() == {"scan": w["seg"].scan_id, "label_set": w["label_set"].pk,
                               "labelled_slices": list(range(3, 9)), "source_name": "labels.seg.nrrd"}
    stored = ReferenceLabelMap.objects.get(scan=w["seg"].scan, label_set=w["label_set"])
    np.testing.assert_array_equal(reference_labels(stored), volumes()[0])


def test_segments_map_by_name_to_another_projects_values(w):
    """A file from a project whose label set numbers the same structures differently."""
    content = client(w["lead"]).get(url(w["seg"], "labels.seg.nrrd")).content
    renumbered = LabelSet.objects.create(name="renumbered")
    for value, name in ((5, "femur"), (6, "psoas_right"), (7, "psoas_left")):
        Label.objects.create(label_set=renumbered, value=value, name=name, colour="#123456")
    other = ProjectFactory(label_set=renumbered, pools=[w["pool"]])
    MembershipFactory(project=other, user=w["lead"])
    assert post(w["lead"], other, w["seg"].scan, content).status_code == 201
    stored = reference_labels(ReferenceLabelMap.objects.get(scan=w["seg"].scan, label_set=renumbered))
    labels = volumes()[0]
    np.testing.assert_array_equal(stored, np.select([labels == 1, labels == 2, labels == 3], [7, 6, 5], 0))


def test_unmapped_segment_names_are_listed_and_nothing_is_stored(w):
    other_set = LabelSet.objects.create(name="only femur")
    Label.objects.create(label_set=other_set, value=1, name="femur", colour="#ffffff")
    foreign = ProjectFactory(label_set=other_set, pools=[w["pool"]])
    MembershipFactory(project=foreign, user=w["lead"])
    content = client(w["lead"]).get(url(w["seg"], "labels.seg.nrrd")).content
    before = stored_files(w["media"])
    response = post(w["lead"], foreign, w["seg"].scan, content, name="mine.seg.nrrd")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "unmapped_segments"
    assert body["detail"].startswith("mine.seg.nrrd: segments 'psoas_left', 'psoas_right' have no structure of "
                                     "that name in the label set (femur); rename them in Slicer")
    assert not ReferenceLabelMap.objects.filter(label_set=other_set).exists()
    assert stored_files(w["media"]) == before


@pytest.mark.parametrize(("content", "code", "message"), [
    (b"not a nrrd at all", "invalid_label_map", "not a readable NRRD file"),
    (None, "invalid_label_map", "no Segment0_Name field: not a Slicer segmentation"),
])
def test_files_that_are_not_slicer_segmentations_are_refused(w, tmp_path, content, code, message):
    if content is None:
        plain = tmp_path / "plain.nrrd"
        nrrd.write(str(plain), np.ones((2, 2, 2), np.uint8), {"space": "left-posterior-superior",
                                                              "space directions": np.eye(3), "space origin": [0, 0, 0]})
        content = plain.read_bytes()
    before = stored_files(w["media"])
    response = post(w["lead"], w["project"], w["seg"].scan, content)
    assert response.status_code == 400 and response.json()["code"] == code
    assert message in response.json()["detail"]
    assert not ReferenceLabelMap.objects.exists() and stored_files(w["media"]) == before


def test_a_segmentation_of_another_place_is_refused(w, tmp_path):
    header = {"space": "left-posterior-superior", "space directions": np.eye(3), "space origin": [5000.0, 0, 0],
              "Segment0_Name": "femur", "Segment0_LabelValue": "1", "Segment0_Layer": "0"}
    path = tmp_path / "far.seg.nrrd"
    nrrd.write(str(path), np.ones((2, 2, 2), np.uint8), header)
    response = post(w["lead"], w["project"], w["seg"].scan, path.read_bytes(), name="far.seg.nrrd")
    assert response.status_code == 400 and response.json()["code"] == "empty_label_map"
    assert response.json()["detail"] == ("far.seg.nrrd: no labelled voxel lies on scan 'first'; check that the "
                                         "segmentation belongs to this CT")
    assert not ReferenceLabelMap.objects.exists()


def test_an_existing_reference_is_replaced_only_when_asked(w):
    content = client(w["lead"]).get(url(w["seg"], "labels.seg.nrrd")).content
    assert post(w["lead"], w["project"], w["seg"].scan, content).status_code == 201
    again = post(w["lead"], w["project"], w["seg"].scan, content, name="again.seg.nrrd")
    assert again.status_code == 409 and again.json()["code"] == "reference_exists"
    assert "send replace=true to replace them" in again.json()["detail"]
    assert ReferenceLabelMap.objects.get().source_name == "labels.seg.nrrd"
    replaced = post(w["lead"], w["project"], w["seg"].scan, content, name="again.seg.nrrd", replace="true")
    assert replaced.status_code == 201 and ReferenceLabelMap.objects.get().source_name == "again.seg.nrrd"


def test_access_annotators_403_outsiders_and_foreign_scans_404(w):
    content = client(w["lead"]).get(url(w["seg"], "labels.seg.nrrd")).content
    assert post(w["annotator"], w["project"], w["seg"].scan, content).status_code == 403
    assert post(w["outsider"], w["project"], w["seg"].scan, content).status_code == 404
    assert client(w["outsider"]).get(url(w["seg"], "labels.seg.nrrd")).status_code == 404
    elsewhere = segmented(ProjectFactory(pools=[PoolFactory()]), PoolFactory(), name="elsewhere")
    response = post(w["lead"], w["project"], elsewhere.scan, content)
    assert response.status_code == 404 and "No scan" in response.json()["detail"]
    assert not ReferenceLabelMap.objects.exists()


def test_a_replaced_reference_leaves_no_file_behind(w, django_capture_on_commit_callbacks):
    content = client(w["lead"]).get(url(w["seg"], "labels.seg.nrrd")).content
    assert post(w["lead"], w["project"], w["seg"].scan, content).status_code == 201
    first = ReferenceLabelMap.objects.get().labels.name
    with django_capture_on_commit_callbacks(execute=True):
        assert post(w["lead"], w["project"], w["seg"].scan, content, replace="true").status_code == 201
    second = ReferenceLabelMap.objects.get().labels.name
    files = stored_files(w["media"])
    assert second in files and first not in files
