"""The scan viewer's 3D view: a segmented phantom's structures drawn with WebGL, toggled, rotated,
under the strict Content-Security-Policy, without a console error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.utils import timezone
from PIL import Image

from backend.acquisition.models import ModelVersion, Segmentation
from backend.imaging.volumes import save_array
from backend.projects.models import Label, LabelSet, Membership
from mltasks.phantom import generate_phantom
from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    scan_with_volume,
    use_tmp_storage,
)
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def segmented_phantom(tmp_path, settings):
    """(segmentation, lead, names of the structures present): a small phantom segmented exactly."""
    use_tmp_storage(settings, tmp_path)
    phantom = generate_phantom(5, shape=(24, 64, 64), noise=False)
    label_set = LabelSet.objects.create(name="phantom set")
    for lab in phantom.label_set.labels:
        Label.objects.create(label_set=label_set, value=lab.value, name=lab.name, kind=lab.kind, colour=lab.colour)
    pool = PoolFactory()
    project = ProjectFactory(label_set=label_set, pools=[pool], name="Phantom study")
    scan = scan_with_volume(pool, phantom.hu, name="phantom 5", geometry=phantom.geometry)
    lead = MembershipFactory(project=project, role=Membership.Role.LEAD, user=UserFactory(username="leo")).user
    version = ModelVersion.objects.create(project=project, number=1, checkpoint="acquisition/models/none.pt")
    seg = Segmentation.objects.create(
        project=project, model_version=version, scan=scan, status="done", finished=timezone.now(),
        labels=save_array(phantom.labels, "acquisition/segmentations/labels.npy"),
        uncertainty=save_array(np.zeros(phantom.labels.shape, np.float16), "acquisition/segmentations/u.npy"))
    present = [lab.name for lab in phantom.label_set.labels if (phantom.labels == lab.value).any()]
    return seg, lead, present


def drawn_pixels(page) -> int:
    """Pixels inside the 3D canvas that differ from its background (#f4f6f8)."""
    shot = page.locator("#mesh-canvas canvas").screenshot()
    image = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))[4:-4, 4:-4]  # not the rounded corners
    return int((np.abs(image.astype(int) - [0xF4, 0xF6, 0xF8]).sum(axis=2) > 30).sum())


def test_the_3d_view_draws_every_structure_with_toggles(watched_page, asgi_server, plain_static, tmp_path, settings):
    seg, lead, present = segmented_phantom(tmp_path, settings)
    page = watched_page
    log_in(page, asgi_server, lead.username)
    response = page.goto(f"{asgi_server}/scans/{seg.scan_id}/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector("#mesh-show:not([hidden])", timeout=15000)
    for link, name in (("#download-meshes", "meshes.zip"), ("#download-muscle-html", "muscle-report.html"),
                       ("#download-seg-nrrd", "labels.seg.nrrd")):
        assert page.get_attribute(link, "href").endswith(f"/segmentations/{seg.id}/{name}")
    page.click("#mesh-show")
    page.wait_for_selector("#mesh-canvas canvas", timeout=30000)
    page.wait_for_function("() => window.meshView.frames > 0", timeout=15000)

    # three.js drew into a WebGL 2 context (software rendering here: the browser runs with --disable-gpu).
    assert page.evaluate("() => window.meshView.renderer.getContext() instanceof WebGL2RenderingContext")
    names = page.eval_on_selector_all("#mesh-toggles input[type=checkbox]", "els => els.map(e => e.value)")
    assert names == present and len(names) > 10
    page.locator("#mesh-canvas canvas").screenshot(path=str(tmp_path / "mesh_view.png"))
    before = drawn_pixels(page)
    assert before > 2000, "the structures should cover part of the canvas"

    # Every structure off: nothing drawn; one back on: some.
    for name in names:
        page.uncheck(f"#mesh-toggles input[value='{name}']")
    assert page.evaluate("() => window.meshView.structures.every(s => !s.mesh.visible)")
    assert drawn_pixels(page) == 0
    page.check(f"#mesh-toggles input[value='{names[0]}']")
    one = drawn_pixels(page)
    assert 0 < one < before

    # Dragging turns the structures.
    box = page.locator("#mesh-canvas canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 120, box["y"] + box["height"] / 2 + 30, steps=5)
    page.mouse.up()
    assert page.evaluate("() => window.meshView.frames") > 3

    page.wait_for_load_state("networkidle")
    assert page.evaluate("() => window.__csp") == []
    assert page.problems == []


def test_the_html_report_shows_its_figure_under_its_own_policy(watched_page, asgi_server, plain_static, tmp_path,
                                                              settings):
    """The report is a download; shown as a page with the headers it comes with, its data: PNG loads."""
    seg, lead, _ = segmented_phantom(tmp_path, settings)
    page = watched_page
    log_in(page, asgi_server, lead.username)
    report = page.request.get(f"{asgi_server}/api/projects/{seg.project_id}/segmentations/{seg.id}/muscle-report.html")
    assert report.status == 200
    policy = report.headers["content-security-policy"]
    assert "img-src 'self' data:" in policy and "unsafe" not in policy
    shown = f"{asgi_server}/shown-report/"  # the same bytes and policy, without the attachment header
    page.route(shown, lambda route: route.fulfill(status=200, body=report.body(), headers={
        "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": policy}))
    page.goto(shown)
    page.wait_for_function("() => document.images.length === 1 && document.images[0].complete")
    assert page.evaluate("() => document.images[0].naturalWidth") > 300
    assert "phantom 5" in page.inner_text("body") and "gluteus_maximus" in page.inner_text("table:last-of-type")
    assert page.evaluate("() => window.__csp") == [] and page.problems == []
