"""The administration page's PACS section in the browser, against a real Orthanc: connect an archive,
find a study, import its CT series into a pool and read the result; no console or CSP error."""

from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from backend.imaging.models import DicomWebArchive, Scan
from mltasks.geometry import Geometry
from mltasks.io import write_dicom_series
from tests.backend.factories import PoolFactory, ProjectFactory, use_tmp_storage
from tests.browser.conftest import log_in
from tests.browser.data import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_administrator_connects_orthanc_and_imports_a_series(app_page, asgi_server, plain_static, orthanc,
                                                                 tmp_path, settings):
    use_tmp_storage(settings, tmp_path)  # the import job runs eagerly: no worker in tests
    geometry = Geometry(shape=(4, 32, 32), spacing=(2.0, 10.0, 10.0))
    hu = np.full(geometry.shape, -1000, np.int16)
    hu[:, 6:26, 6:26] = 40
    orthanc.store_files(write_dicom_series(hu, geometry, tmp_path / "ct", series_description="thigh CT",
                                           patient_id="PAT-77"))
    pool = PoolFactory(name="thighs")
    ProjectFactory(name="thigh study", pools=[pool])
    admin = get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)
    page = app_page
    log_in(page, asgi_server, admin.username)
    page.goto(asgi_server + "/admin-tools/")

    page.wait_for_selector("#pacs:not([hidden])")
    page.fill("#pacs-archive-name", "Orthanc")
    page.fill("#pacs-archive-url", orthanc.dicomweb_url)
    page.fill("#pacs-archive-user", orthanc.username)
    page.fill("#pacs-archive-password", "wrong")
    page.click("#pacs-archive-form button[type=submit]")
    page.wait_for_selector("#pacs-message.error")
    assert "refused the user name or password" in page.inner_text("#pacs-message")
    assert not DicomWebArchive.objects.exists()
    page.fill("#pacs-archive-password", orthanc.password)
    page.click("#pacs-archive-form button[type=submit]")
    page.wait_for_selector("#pacs-message.ok >> text=is connected")

    page.fill("#pacs-patient-id", "77")
    page.click("#pacs-search button[type=submit]")
    page.click("#pacs-studies tbody button")
    page.wait_for_selector("#pacs-series:not([hidden]) tbody input:checked")
    page.select_option("#pacs-pool", str(pool.id))
    page.click("#pacs-import button[type=submit]")
    page.wait_for_selector("#pacs-status.ok", timeout=30000)
    assert "1 series imported, 0 failed" in page.inner_text("#pacs-status")
    assert Scan.objects.get().pool == pool
    # The refused configuration's 400 is logged by the browser itself; nothing else went wrong.
    assert [e for e in page.errors if "status of 400" not in e] == []
