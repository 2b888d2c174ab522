"""Sending a finished segmentation to a PACS as DICOM-SEG (STOW-RS): leads and admins of its project
may, the SEG lands in the CT's study, and what cannot be sent says why and sends nothing."""

from __future__ import annotations

import numpy as np
import pytest

from backend.acquisition.models import Segmentation
from backend.imaging.models import DicomWebArchive
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    scan_with_volume,
    segmentation_with_uncertainty,
    use_tmp_storage,
)
from tests.orthanc import free_port, seg_series_in, segmented_dicom_scan

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


@pytest.fixture
def segmented(orthanc, tmp_path):
    """A DICOM scan whose series Orthanc holds, and a finished segmentation of it (two boxes)."""
    return segmented_dicom_scan(orthanc, tmp_path)


def _member(client, project, role: str):
    user = UserFactory()
    MembershipFactory(user=user, project=project, role=role)
    client.force_login(user)
    return client


def _send(client, seg, archive_id: int):
    return client.post(f"/api/projects/{seg.project_id}/segmentations/{seg.id}/pacs/", {"archive": archive_id},
                       content_type="application/json")


@pytest.mark.parametrize("role", ["lead", "admin"])
def test_a_lead_sends_the_seg_into_the_cts_study(client, orthanc, archive, segmented, role):
    response = _send(_member(client, segmented["project"], role), segmented["seg"], archive.id)

    assert response.status_code == 201, response.content
    sent = response.json()
    assert (sent["study_uid"], sent["referenced_series_uid"]) == (segmented["study"], segmented["series"])
    [found] = seg_series_in(orthanc, segmented["study"])
    assert found["0020000E"]["Value"] == [sent["series_uid"]]


def test_annotators_get_403_and_strangers_404_and_nothing_is_sent(client, orthanc, archive, segmented):
    assert _send(_member(client, segmented["project"], "annotator"), segmented["seg"], archive.id).status_code == 403
    stranger = UserFactory()
    MembershipFactory(user=stranger, project=ProjectFactory(), role="admin")
    client.force_login(stranger)
    assert _send(client, segmented["seg"], archive.id).status_code == 404
    assert seg_series_in(orthanc, segmented["study"]) == []


def test_an_unfinished_segmentation_is_not_sent(client, orthanc, archive, segmented):
    seg = segmented["seg"]
    Segmentation.objects.filter(pk=seg.pk).update(status=Segmentation.Status.RUNNING)
    response = _send(_member(client, segmented["project"], "lead"), seg, archive.id)
    assert response.status_code == 409 and response.json()["code"] == "not_done"
    assert "once it is done" in response.json()["detail"]
    assert seg_series_in(orthanc, segmented["study"]) == []


def test_a_scan_not_imported_from_dicom_is_not_sent(client, archive):
    pool = PoolFactory()
    project = ProjectFactory(label_set=LabelSetFactory(labels__n=2), pools=[pool])
    scan = scan_with_volume(pool, np.zeros((3, 8, 8), np.int16), name="phantom")
    seg = segmentation_with_uncertainty(project, scan, np.zeros((3, 8, 8), np.float16))
    response = _send(_member(client, project, "lead"), seg, archive.id)
    assert response.status_code == 409 and response.json()["code"] == "not_dicom"
    assert "was not imported from DICOM" in response.json()["detail"]


def test_an_archive_that_does_not_answer_gives_a_502(client, segmented):
    gone = DicomWebArchive.objects.create(name="Gone", url=f"http://127.0.0.1:{free_port()}/dicom-web")
    response = _send(_member(client, segmented["project"], "lead"), segmented["seg"], gone.id)
    assert response.status_code == 502 and response.json()["code"] == "pacs_unreachable"


def test_an_unknown_archive_is_a_404(client, segmented):
    response = _send(_member(client, segmented["project"], "lead"), segmented["seg"], 999)
    assert response.status_code == 404 and "No PACS archive" in response.json()["detail"]
