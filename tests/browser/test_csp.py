"""Every page works in Chromium under the strict Content-Security-Policy, with no violation.

A violation shows three ways, all collected: a ``securitypolicyviolation`` event in the page
(listened to by a script Playwright injects beside the policy), a console message, and a
page error of a script that then failed.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.browser.conftest import log_in
from tests.browser.data import PASSWORD, annotating_project, lead_history, scan_segmentation

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]



def visit(page, url: str, ready: str, *, function: bool = False, status: int = 200) -> None:
    """Open ``url``, wait until the page shows it works (a selector or a JS condition), and
    fail on any CSP violation or error the page met on the way."""
    response = page.goto(url)
    assert response is not None and response.status == status, f"{url}: HTTP {response and response.status}"
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "unsafe" not in policy, f"{url}: {policy!r}"
    if function:
        page.wait_for_function(ready, timeout=15000)
    else:
        page.wait_for_selector(ready, timeout=15000)
    page.wait_for_load_state("networkidle")
    violations = page.evaluate("() => window.__csp")
    # Chromium logs the page's own 403/404 status as a console error; that one is expected.
    problems = [p for p in page.problems if status == 200 or f"status of {status}" not in p]
    assert violations == [] and problems == [], f"{url}: {violations} {problems}"
    page.problems.clear()


def test_every_page_of_a_lead_and_an_admin_runs_under_the_policy(watched_page, asgi_server, plain_static, tmp_path,
                                                                 settings):
    project, lead = lead_history(tmp_path, settings)
    seg = scan_segmentation(project)
    root = get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)
    page, base = watched_page, asgi_server
    visit(page, base + "/accounts/login/", "input[name=username]")
    for _ in range(settings.AXES_FAILURE_LIMIT):  # the lock-out page is a page too
        page.fill("input[name=username]", "nobody")
        page.fill("input[name=password]", "guess")
        page.click("button[type=submit]")
        page.wait_for_load_state()
    assert "Too many failed logins" in page.inner_text("main")
    assert page.evaluate("() => window.__csp") == [] and [p for p in page.problems if "429" not in p] == []
    page.problems.clear()
    log_in(page, base, root.username)
    visit(page, base + "/", "#health tbody th")
    visit(page, f"{base}/projects/{project.id}/dashboard/", "() => window.dashboard && window.dashboard.live === 'live'",
          function=True)
    assert page.locator("#chart-dice-step svg").count() == 1  # charts drawn
    visit(page, base + "/admin-tools/", "#pools tbody tr")
    visit(page, f"{base}/scans/{seg.scan_id}/", "() => window.scanViewer && window.scanViewer.labels", function=True)
    visit(page, f"{base}/projects/{project.id}/annotate/", "#empty:not([hidden]), #workspace:not([hidden])")
    visit(page, base + "/admin/", "#content h1")
    visit(page, base + "/admin/auth/user/", "#result_list")
    visit(page, f"{base}/admin/auth/user/{lead.id}/change/", "#user_form")
    visit(page, base + "/admin/axes/accessattempt/", "#content h1")
    visit(page, base + "/api/docs/", ".swagger-ui .opblock")
    visit(page, base + "/projects/999999/dashboard/", "h1", status=404)


def test_annotator_paints_under_the_policy(watched_page, asgi_server, plain_static, tmp_path, settings):
    project, annotator, _, _ = annotating_project(tmp_path, settings)
    page, base = watched_page, asgi_server
    log_in(page, base, annotator.username)
    visit(page, f"{base}/projects/{project.id}/annotate/",
          "() => window.annotator && window.annotator.editor && window.annotator.viewer.hu", function=True)
    swatch = page.eval_on_selector("#palette .swatch", "el => getComputedStyle(el).backgroundColor")
    assert swatch == "rgb(230, 25, 75)"  # the first structure's colour, set through the CSSOM
    box = page.locator("#viewport canvas").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert page.evaluate("() => window.__csp") == [] and page.problems == []
    visit(page, f"{base}/projects/{project.id}/dashboard/", "h1", status=403)  # not open to an annotator
