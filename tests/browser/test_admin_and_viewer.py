"""Admin imports (the pool stays chosen, the scan list follows, only label maps offered as references,
each error names its file once, a link to every imported scan) and the scan viewer (the CT at once,
reference labels, the wheel through the slices, Ctrl+wheel zoom, a readout), in Chromium."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from django.contrib.auth import get_user_model

from backend.imaging.models import Pool, Scan
from tests.browser.conftest import log_in
from tests.browser.data import PASSWORD, lead_history

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def nifti(array: np.ndarray) -> bytes:
    """A .nii.gz of (z, y, x) ``array`` at 1 mm."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 2.0))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.nii.gz"
        sitk.WriteImage(image, str(path))
        return path.read_bytes()


def volumes() -> tuple[bytes, bytes]:
    zz, yy, xx = np.mgrid[:6, :48, :48]
    body = (yy - 24) ** 2 + (xx - 24) ** 2 <= 15**2
    ct = np.where(body, 40, -1000).astype(np.int16)
    ct[body & ((yy - 24) ** 2 + (xx - 24) ** 2 <= 5**2)] = 700
    labels = np.where(body, 4, 0).astype(np.uint8)
    labels[(yy - 24) ** 2 + (xx - 24) ** 2 <= 5**2] = 5
    return nifti(ct), nifti(labels)


def files(*named: tuple[str, bytes]) -> list[dict]:
    return [{"name": n, "mimeType": "application/octet-stream", "buffer": b} for n, b in named]


def test_admin_imports_keep_the_pool_refresh_its_scans_and_link_each_scan(app_page, asgi_server, plain_static,
                                                                         tmp_path, settings):
    project, _ = lead_history(tmp_path, settings)
    second = Pool.objects.create(name="Zeta pool")
    project.pools.add(second)
    admin = get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)
    page = app_page
    log_in(page, asgi_server, admin.username)
    page.goto(asgi_server + "/admin-tools/")
    page.wait_for_selector("#pools tbody tr >> nth=1")
    page.select_option("#upload-pool", str(second.id))
    page.locator("#pools tbody tr", has_text="Zeta pool").locator("button").click()
    page.wait_for_selector("#pool-scans .empty")

    ct, labels = volumes()
    page.select_option("#upload-label-set", str(project.label_set_id))
    page.set_input_files("#upload-files", files=files(("scan.nii.gz", ct), ("scan-labels.nii.gz", labels),
                                                      ("series.zip", b"PK"), ("IM0001.dcm", b"x" * 200)))
    options = page.eval_on_selector_all("#upload-labels option", "os => os.map((o) => o.textContent)")
    assert options == ["none", "scan.nii.gz", "scan-labels.nii.gz"], "a zip or a DICOM slice is no label map"
    page.set_input_files("#upload-files", files=files(("scan.nii.gz", ct), ("scan-labels.nii.gz", labels)))
    page.select_option("#upload-labels", "scan-labels.nii.gz")
    page.click("#upload-start")
    page.wait_for_selector("#upload-scans a", timeout=30000)
    scan = Scan.objects.get(pool=second)
    assert page.get_attribute("#upload-scans a", "href") == f"/scans/{scan.id}/"
    # Item 8: the next batch goes where this one went; the shown pool's scans are up to date.
    assert page.input_value("#upload-pool") == str(second.id)
    page.wait_for_selector("#pool-scans a")
    assert "scan" in page.inner_text("#pool-scans") and "reference labels" in page.inner_text("#pool-scans")

    page.set_input_files("#upload-files", files=files(("notdicom.dcm", b"not a dicom file" * 20)))
    page.click("#upload-start")
    page.wait_for_selector("#upload-errors li", timeout=30000)
    error = page.inner_text("#upload-errors li")
    assert error.count("notdicom.dcm") == 1, error
    assert page.input_value("#upload-pool") == str(second.id)

    # Item 9: the scan viewer from the link: the CT at once, the reference labels, the wheel.
    page.click("#pool-scans a")  # the pool's list links each scan too
    page.wait_for_function("() => window.scanViewer && window.scanViewer.hu && window.scanViewer.slice")
    assert page.input_value("#overlay").startswith("ref-")
    z0 = page.evaluate("() => window.scanViewer.z")
    box = page.locator("#viewport").bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.move(*centre)
    readout = page.inner_text("#readout")
    assert "700 HU" in readout and "(reference)" in readout, readout
    assert "Gluteus maximus" in page.inner_text("#legend") or "Femur" in page.inner_text("#legend")
    zoom = page.evaluate("() => document.querySelector('#viewport .stage').style.transform")
    page.mouse.wheel(0, 100)
    page.wait_for_function(f"() => window.scanViewer.z === {z0 + 1}")
    assert page.evaluate("() => document.querySelector('#viewport .stage').style.transform") == zoom
    page.keyboard.down("Control")
    page.mouse.wheel(0, -100)
    page.keyboard.up("Control")
    assert page.evaluate("() => window.scanViewer.z") == z0 + 1
    assert page.evaluate("() => document.querySelector('#viewport .stage').style.transform") != zoom
    assert page.errors == []


def test_an_admin_changes_a_structure_colour_and_sees_colours_too_close(app_page, asgi_server, plain_static, tmp_path,
                                                                       settings):
    from backend.projects.models import Label

    project, _ = lead_history(tmp_path, settings)
    admin = get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)
    page = app_page
    log_in(page, asgi_server, admin.username)
    page.goto(asgi_server + "/admin-tools/")
    page.wait_for_selector("#colours input[type=color]")
    assert page.input_value("#colour-project") == str(project.id)
    assert "Gluteus maximus" in page.inner_text("#colours")
    page.locator("#colours input[data-value='1']").fill("#3cb44b")  # gluteus medius' colour
    page.wait_for_selector("#message.ok")
    assert Label.objects.get(label_set=project.label_set, value=1).colour == "#3cb44b"
    assert "Gluteus maximus and Gluteus medius are hard to tell apart" in page.inner_text("#colour-warnings")
    assert page.errors == []
