"""The slice fast path answers exactly as the DRF views do, and hands everything else to them.

Every request below goes through the ASGI application twice: through ``SliceFastPath``
and straight to Django's ASGI handler. Status, body and headers must be equal, and the
fast path may only have answered the plain success cases itself.
"""

import numpy as np
import pytest
from rest_framework.authtoken.models import Token

from backend.imaging.models import Scan
from backend.imaging.slice_fastpath import SliceFastPath
from backend.projects.models import Membership
from tests.backend.asgi_calls import PASSED, SERVED, CountingDjango, call
from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    scan_with_volume,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def _call(app, path: str, query: str = "", headers: dict | None = None):
    return call(app, "GET", path, query, headers)


@pytest.fixture
def world(client):
    pool, other_pool = PoolFactory(), PoolFactory()
    project = ProjectFactory(pools=[pool])
    other = ProjectFactory(pools=[other_pool])
    hu = np.random.default_rng(0).integers(-1024, 2000, size=(3, 64, 48)).astype(np.int16)
    scan = scan_with_volume(pool, hu)
    pending = scan_with_volume(pool, hu + 1)
    Scan.objects.filter(pk=pending.pk).update(status=Scan.Status.FAILED)
    users = {
        "annotator": MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user,
        "lead": MembershipFactory(project=project, role=Membership.Role.LEAD).user,
        "admin": MembershipFactory(project=project, role=Membership.Role.ADMIN).user,
        "stranger": UserFactory(),  # a member of nothing
        "foreign": MembershipFactory(project=other, role=Membership.Role.ADMIN).user,
        "superuser": UserFactory(is_superuser=True),
        "inactive": MembershipFactory(project=project, role=Membership.Role.LEAD, user__is_active=False).user,
    }
    client.force_login(users["annotator"])
    headers = {name: {"Authorization": f"Token {Token.objects.create(user=user).key}"} for name, user in users.items()}
    headers["session"] = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
    headers["anonymous"] = {}
    headers["bad token"] = {"Authorization": "Token nope"}
    return {"scan": scan, "pending": pending, "hu": hu, "headers": headers}


REQUESTS = [
    # (who, path with {scan}/{pending}, query, extra headers, expected)
    ("annotator", "/api/scans/{scan}/slices/1.png", "", {}, SERVED),
    ("annotator", "/api/scans/{scan}/slices/1.raw", "", {}, SERVED),
    ("annotator", "/api/scans/{scan}/slices/0.png", "preset=bone", {}, SERVED),
    ("annotator", "/api/scans/{scan}/slices/2.png", "window=1500&level=-300.5", {}, SERVED),
    ("annotator", "/api/scans/{scan}/slices/2.png", "", {"Accept": "image/png,*/*;q=0.8"}, SERVED),
    ("session", "/api/scans/{scan}/slices/1.png", "", {}, SERVED),
    ("session", "/api/scans/{scan}/slices/1.raw", "", {"Accept": "application/octet-stream"}, SERVED),
    ("superuser", "/api/scans/{scan}/slices/1.raw", "", {}, SERVED),
    # The access rule (backend.projects.access.scan_for) for every role, on a ready and a failed scan:
    ("lead", "/api/scans/{scan}/slices/1.png", "", {}, SERVED),
    ("admin", "/api/scans/{scan}/slices/1.raw", "", {}, SERVED),
    ("stranger", "/api/scans/{scan}/slices/1.png", "", {}, PASSED),
    ("lead", "/api/scans/{pending}/slices/1.png", "", {}, PASSED),
    ("admin", "/api/scans/{pending}/slices/1.raw", "", {}, PASSED),
    ("superuser", "/api/scans/{pending}/slices/1.raw", "", {}, PASSED),
    ("annotator", "/api/scans/{scan}/slices/3.png", "", {}, PASSED),  # out of range: 404 with the depth
    ("annotator", "/api/scans/{scan}/slices/1.png", "window=0&level=40", {}, PASSED),
    ("annotator", "/api/scans/{scan}/slices/1.png", "window=400", {}, PASSED),
    ("annotator", "/api/scans/{scan}/slices/1.png", "preset=lung", {}, PASSED),
    ("annotator", "/api/scans/{scan}/slices/1.png", "window=nan&level=1", {}, PASSED),
    ("annotator", "/api/scans/{scan}/slices/1.png", "format=json", {}, PASSED),
    ("annotator", "/api/scans/{scan}/slices/1.raw", "preset=bone", {}, PASSED),
    ("annotator", "/api/scans/{scan}/slices/1.png", "", {"Accept": "text/html"}, PASSED),
    ("annotator", "/api/scans/{scan}/slices/1.raw", "", {"Accept": "application/json"}, PASSED),
    ("annotator", "/api/scans/{pending}/slices/1.png", "", {}, PASSED),
    ("annotator", "/api/scans/99999/slices/1.png", "", {}, PASSED),
    ("foreign", "/api/scans/{scan}/slices/1.png", "", {}, PASSED),
    ("foreign", "/api/scans/{scan}/slices/1.raw", "", {}, PASSED),
    ("inactive", "/api/scans/{scan}/slices/1.png", "", {}, PASSED),
    ("anonymous", "/api/scans/{scan}/slices/1.png", "", {}, PASSED),
    ("bad token", "/api/scans/{scan}/slices/1.raw", "", {}, PASSED),
    ("annotator", "/api/scans/{scan}/slices/1.raw", "", {"Host": "evil.example"}, PASSED),  # not in ALLOWED_HOSTS
]


@pytest.mark.parametrize(("who", "path", "query", "extra", "expected"), REQUESTS)
def test_answers_equal_the_django_views(world, who, path, query, extra, expected):
    path = path.format(scan=world["scan"].pk, pending=world["pending"].pk)
    headers = {**world["headers"][who], **extra}
    django_app = CountingDjango()
    reference = _call(django_app, path, query, headers)
    fast = SliceFastPath(django_app)
    answer = _call(fast, path, query, headers)
    assert answer == reference
    assert django_app.calls == (1 if expected == SERVED else 2), f"expected: {expected}"


def test_served_slices_hold_the_volume(world):
    headers = world["headers"]["annotator"]
    status, found, body = _call(SliceFastPath(CountingDjango()), f"/api/scans/{world['scan'].pk}/slices/2.raw", "", headers)
    assert status == 200 and found["x-shape"] == "64,48"
    assert np.array_equal(np.frombuffer(body, "<i2").reshape(64, 48), world["hu"][2])


def test_revoked_membership_is_refused_at_once(world):
    fast = SliceFastPath(CountingDjango())
    path = f"/api/scans/{world['scan'].pk}/slices/1.raw"
    assert _call(fast, path, "", world["headers"]["annotator"])[0] == 200
    Membership.objects.filter(role=Membership.Role.ANNOTATOR).delete()
    assert _call(fast, path, "", world["headers"]["annotator"])[0] == 404


def test_switched_off_everything_goes_to_django(world, settings):
    settings.MYOLABEL_FAST_SLICES = False
    django_app = CountingDjango()
    _call(SliceFastPath(django_app), f"/api/scans/{world['scan'].pk}/slices/1.png", "", world["headers"]["annotator"])
    assert django_app.calls == 1
