"""Every page answers with the strict Content-Security-Policy (tests/browser/test_csp.py checks
that the pages still work under it in Chromium)."""

from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    scan_with_volume,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db

EXPECTED = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self' ws://testserver wss://testserver",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def directives(response) -> dict[str, str]:
    header = response.headers.get("Content-Security-Policy", "")
    return dict(part.strip().split(" ", 1) for part in header.split(";") if part.strip())


@pytest.fixture
def site(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)
    pool = PoolFactory()
    project = ProjectFactory(pools=[pool])
    scan = scan_with_volume(pool, np.zeros((2, 8, 8), np.int16))
    root = get_user_model().objects.create_superuser("root", "root@example.org", "pw-123456")
    MembershipFactory(project=project, user=root)
    return {"project": project.id, "scan": scan.id, "root": root}


def test_every_page_carries_the_policy(client, site):
    anonymous = ["/accounts/login/", "/admin/login/", "/api/docs/"]
    pages = ["/", f"/projects/{site['project']}/annotate/", f"/projects/{site['project']}/dashboard/",
             "/admin-tools/", f"/scans/{site['scan']}/", "/admin/", "/admin/auth/user/",
             f"/admin/auth/user/{site['root'].id}/change/", "/admin/axes/accessattempt/", "/projects/999999/annotate/"]
    for url in anonymous:
        response = client.get(url)
        assert response.status_code == 200, url
        assert directives(response) == EXPECTED, url
    client.force_login(site["root"])
    for url in pages:
        response = client.get(url)
        assert response.status_code == (404 if "999999" in url else 200), url
        assert directives(response) == EXPECTED, url
        assert "<script>" not in response.content.decode() and " style=" not in response.content.decode(), url
    # No HTML API pages (DRF's browsable API has inline styles): a browser gets JSON, which,
    # like the fast paths' answers, carries no policy (only documents need one).
    api = client.get("/api/projects/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert api.status_code == 200 and api.headers["Content-Type"] == "application/json"
    assert "Content-Security-Policy" not in api.headers


def test_a_secure_page_names_only_wss(client, site, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["myolabel.example.org"]
    response = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https", HTTP_HOST="myolabel.example.org")
    assert directives(response)["connect-src"] == "'self' wss://myolabel.example.org"
