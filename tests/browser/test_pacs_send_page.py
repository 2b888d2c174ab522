"""The scan viewer's "Send to PACS" against a real Orthanc: a lead sends the shown segmentation as
DICOM-SEG into the CT's study; an annotator is not offered it; what cannot be sent says why."""

from __future__ import annotations

import numpy as np
import pytest

from backend.imaging.models import DicomWebArchive
from backend.imaging.pacs.secrets import encrypt_password
from backend.imaging.volumes import save_array
from backend.projects.models import Membership
from tests.backend.factories import (
    MembershipFactory,
    UserFactory,
    scan_with_volume,
    segmentation_with_uncertainty,
    use_tmp_storage,
)
from tests.browser.conftest import log_in
from tests.orthanc import seg_series_in, segmented_dicom_scan

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(orthanc, tmp_path, settings) -> dict:
    """A segmented DICOM scan whose series Orthanc holds (``segmented_dicom_scan``) and Orthanc
    configured as the site's "Radiology PACS"."""
    use_tmp_storage(settings, tmp_path)
    scanned = segmented_dicom_scan(orthanc, tmp_path)
    DicomWebArchive.objects.create(name="Radiology PACS", url=orthanc.dicomweb_url, username=orthanc.username,
                                   password_encrypted=encrypt_password(orthanc.password))
    return scanned


def _member(project, role: str):
    return MembershipFactory(project=project, role=role, user=UserFactory()).user


def _open(page, server, user, scan_id: int) -> None:
    log_in(page, server, user.username)
    page.goto(f"{server}/scans/{scan_id}/")
    page.wait_for_selector("#download-labels:not([hidden])", timeout=15000)  # the segmentation is shown


def test_a_lead_sends_the_shown_segmentation_to_the_pacs(watched_page, asgi_server, plain_static, orthanc, world):
    lead = _member(world["project"], Membership.Role.LEAD)
    page = watched_page
    _open(page, asgi_server, lead, world["scan"].id)

    page.wait_for_selector("#pacs-send:not([hidden])")
    assert page.eval_on_selector_all("#pacs-send-archive option", "els => els.map(e => e.textContent)") == [
        "Radiology PACS"]
    page.click("#pacs-send-button")
    page.wait_for_selector("#pacs-send-message.ok", timeout=30000)
    [found] = seg_series_in(orthanc, world["study"])
    sent_series = found["0020000E"]["Value"][0]
    text = page.inner_text("#pacs-send-message")
    assert "Sent to Radiology PACS" in text and sent_series in text and world["series"] in text


def test_an_annotator_is_not_offered_the_pacs(watched_page, asgi_server, plain_static, world):
    annotator = _member(world["project"], Membership.Role.ANNOTATOR)
    page = watched_page
    _open(page, asgi_server, annotator, world["scan"].id)
    page.wait_for_timeout(500)  # the panel would appear after one more request
    assert page.is_hidden("#pacs-send")


def test_a_scan_not_imported_from_dicom_says_why_and_sends_nothing(watched_page, asgi_server, plain_static, orthanc,
                                                                   world):
    project = world["project"]
    phantom = scan_with_volume(project.pools.get(), np.zeros((3, 16, 16), np.int16), name="phantom")
    seg = segmentation_with_uncertainty(project, phantom, np.zeros((3, 16, 16), np.float16))
    seg.labels = save_array(np.ones((3, 16, 16), np.uint8), "acquisition/segmentations/phantom.npy")
    seg.save(update_fields=["labels"])
    lead = _member(project, Membership.Role.LEAD)
    page = watched_page
    _open(page, asgi_server, lead, phantom.id)
    page.wait_for_selector("#pacs-send:not([hidden])")
    page.click("#pacs-send-button")
    page.wait_for_selector("#pacs-send-message.error")
    assert "Not sent:" in page.inner_text("#pacs-send-message")
    assert "was not imported from DICOM" in page.inner_text("#pacs-send-message")
    assert seg_series_in(orthanc, world["study"]) == []
