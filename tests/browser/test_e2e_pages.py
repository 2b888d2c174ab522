"""Admin tools (upload with progress and readable errors, roles) and the scan viewer, in the browser."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from backend.imaging.models import ImportJob
from backend.projects.models import Membership
from tests.browser.conftest import log_in
from tests.browser.data import PASSWORD, lead_history, scan_segmentation

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_uploads_a_broken_file_and_reads_why_it_failed(app_page, asgi_server, plain_static, tmp_path,
                                                            settings):
    project, _ = lead_history(tmp_path, settings)  # also runs imports eagerly (no worker in tests)
    admin = get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)
    page = app_page
    log_in(page, asgi_server, admin.username)
    page.click("a[href='/admin-tools/']")
    page.wait_for_selector("#pools tbody tr")
    page.set_input_files("#upload-files", files=[
        {"name": "broken.nii.gz", "mimeType": "application/octet-stream", "buffer": b"not an image" * 1000}])
    page.click("#upload-start")
    page.wait_for_selector("#upload-errors li", timeout=20000)
    assert page.inner_text("#upload-list .pct") == "uploaded"
    assert "not an image file MyoLabel can read" in page.inner_text("#upload-errors")
    assert "0 scan(s) imported, 1 failed" in page.inner_text("#upload-status")
    assert ImportJob.objects.get().status in ("done", "failed")

    # Roles: make ben a lead of the project from the members table.
    ben = Membership.objects.get(project=project, user__username="ben")
    page.select_option(f"#members select >> nth={_row_of(page, 'ben')}", "lead")
    page.wait_for_selector("#message.ok")
    ben.refresh_from_db()
    assert ben.role == "lead"
    assert page.errors == []


def _row_of(page, username: str) -> int:
    names = page.eval_on_selector_all("#members tbody tr td:first-child", "tds => tds.map(t => t.textContent)")
    return names.index(username)


def test_scan_viewer_shows_the_models_labels_and_muscle_report(app_page, asgi_server, plain_static, tmp_path,
                                                              settings):
    project, lead = lead_history(tmp_path, settings)
    seg = scan_segmentation(project)
    page = app_page
    log_in(page, asgi_server, lead.username)
    page.click(f"a[href='/scans/{seg.scan_id}/']")
    page.wait_for_function("() => window.scanViewer && window.scanViewer.labels", timeout=8000)
    depth, height, width = seg.scan.shape
    assert page.evaluate("() => window.scanViewer.labels.length") == depth * height * width
    report = page.inner_text("#report").lower()
    assert "gluteus maximus" in report and "review" in report
    page.check("#heat")
    page.evaluate("() => document.activeElement.blur()")  # arrow keys on a checkbox stay with the checkbox
    page.keyboard.press("ArrowUp")
    page.wait_for_function(f"() => document.querySelector('#z-value').textContent.startsWith('z = {depth // 2 + 1}')")
    assert page.errors == []


def test_pages_check_roles(client, plain_static, tmp_path, settings):
    project, lead = lead_history(tmp_path, settings)
    annotator = get_user_model().objects.get(username="anna")
    stranger = get_user_model().objects.create_user("eve", password=PASSWORD)
    assert client.get(f"/projects/{project.id}/annotate/").status_code == 302  # to the login page
    client.force_login(annotator)
    assert client.get(f"/projects/{project.id}/annotate/").status_code == 200
    assert client.get(f"/projects/{project.id}/dashboard/").status_code == 403
    assert client.get("/admin-tools/").status_code == 403
    client.force_login(stranger)
    assert client.get(f"/projects/{project.id}/annotate/").status_code == 404
    assert client.get(f"/scans/{project.pools.first().scans.first().id}/").status_code == 404
    home = client.get("/").content.decode()
    assert "not a member of any project" in home
    client.force_login(lead)
    home = client.get("/").content.decode()
    assert f"/projects/{project.id}/dashboard/" in home
    assert client.get(f"/projects/{project.id}/dashboard/").status_code == 200
    assert client.get("/admin-tools/").status_code == 200


def test_refusals_are_explained_in_plain_words(client, plain_static, tmp_path, settings):
    project, _ = lead_history(tmp_path, settings)
    client.force_login(get_user_model().objects.get(username="anna"))
    refused = client.get(f"/projects/{project.id}/dashboard/")
    assert refused.status_code == 403 and "not open to your role" in refused.content.decode()
    missing = client.get("/projects/999999/annotate/")
    assert missing.status_code == 404 and "not shared with you" in missing.content.decode()
    assert "/admin-tools/" not in client.get("/").content.decode()
