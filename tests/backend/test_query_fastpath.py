"""The annotator fast path answers exactly as the DRF views do, and hands everything else to them.

Every request below runs twice from the same database state: through Django alone
(then rolled back) and through ``QueryFastPath``. Status, body and headers must be
equal, and the fast path may only have answered the plain success cases itself.
"""

import base64
import json
import zlib
from datetime import UTC, datetime

import numpy as np
import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from backend.acquisition import codec
from backend.acquisition.apis_queries import (
    QueryOutput,
    QuerySubmitApi,
    query_output,
    submission_output,
)
from backend.acquisition.models import AcquisitionStep, Query, TrainingSlice
from backend.acquisition.query_fastpath import QueryFastPath
from backend.acquisition.states import State
from backend.projects.models import Membership
from tests.backend.asgi_calls import PASSED, SERVED, CountingDjango, call
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    scan_with_volume,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 24, 8, 30, 15, 123456, tzinfo=UTC)
MASK = np.zeros((4, 4), bool)
MASK[0, :] = True


@pytest.fixture(autouse=True)
def _storage_and_clock(settings, tmp_path, monkeypatch):
    use_tmp_storage(settings, tmp_path)
    monkeypatch.setattr(timezone, "now", lambda: NOW)  # equal timestamps in both answers


@pytest.fixture
def world(client):
    """Project with an annotating step of two queries; the first is held by "holder"."""
    pool = PoolFactory()
    project = ProjectFactory(label_set=LabelSetFactory(labels__n=3), pools=[pool])
    idle = ProjectFactory(pools=[pool])  # no step: nothing to annotate
    scan = scan_with_volume(pool, np.zeros((3, 4, 4), np.int16))
    step = AcquisitionStep.objects.create(project=project, number=1, state=State.ANNOTATING, strategy="tau",
                                          tau=1e-3, slices_per_step=2, k_uncertain=4, mc_samples=2)
    queries = [Query.objects.create(step=step, scan=scan, z=z, height=4, width=4, mask=codec.pack_mask(MASK),
                                    predicted=codec.pack_labels(np.full((4, 4), 2, np.uint8)),
                                    uncertainty=codec.pack_float16(np.full((4, 4), 0.25)), n_queried=4, n_pixels=16)
               for z in (0, 1)]
    other = ProjectFactory(pools=[PoolFactory()])
    users = {
        "annotator": MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user,
        "holder": MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user,
        "lead": MembershipFactory(project=project, role=Membership.Role.LEAD).user,
        "foreign": MembershipFactory(project=other, role=Membership.Role.ADMIN).user,
        "superuser": UserFactory(is_superuser=True),
        "inactive": MembershipFactory(project=project, role=Membership.Role.LEAD, user__is_active=False).user,
    }
    MembershipFactory(project=idle, user=users["annotator"])
    Query.objects.filter(pk=queries[0].pk).update(assignee=users["holder"], lock_expires=NOW.replace(year=2027),
                                                  claimed_at=NOW)
    client.force_login(users["annotator"])
    headers = {name: {"Authorization": f"Token {Token.objects.create(user=user).key}"} for name, user in users.items()}
    headers["session"] = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
    headers["session and token"] = {**headers["session"], **headers["annotator"]}
    headers["anonymous"] = {}
    headers["bad token"] = {"Authorization": "Token nope"}
    return {"project": project, "idle": idle, "other": other, "queries": queries, "headers": headers}


def _labels(value: int = 1, mask: np.ndarray = MASK) -> str:
    return base64.b64encode(np.where(mask, value, 255).astype(np.uint8).tobytes()).decode()


GOOD = {"labels": _labels(), "seconds_spent": 3.5}
JSON = {"Content-Type": "application/json"}
REQUESTS = [
    # (who, "next" or the index of the query to submit, body (dict, or bytes as sent), extra headers, expected)
    ("annotator", "next", None, {}, SERVED),
    ("lead", "next", None, {}, SERVED),
    ("holder", "next", None, {}, SERVED),  # renews and returns the query it holds
    ("annotator", "idle", None, {}, SERVED),  # no annotating step: 204
    ("annotator", 1, GOOD, JSON, SERVED),
    ("holder", 0, {"labels": _labels(2)}, JSON, SERVED),
    ("annotator", 1, {"labels": base64.b64encode(zlib.compress(np.where(MASK, 1, 255).astype(np.uint8).tobytes()))
                      .decode(), "encoding": "zlib", "seconds_spent": 2}, JSON, SERVED),
    ("annotator", 1, {**GOOD, "seconds_spent": None}, {"Content-Type": "application/json; charset=utf-8"}, SERVED),
    ("annotator", 0, GOOD, JSON, PASSED),  # held by another annotator: 409
    ("annotator", 1, {"labels": _labels(1, np.ones((4, 4), bool))}, JSON, PASSED),  # outside the query: 400
    ("annotator", 1, {"labels": _labels(7)}, JSON, PASSED),  # not in the label set
    ("annotator", 1, {"labels": base64.b64encode(b"\x01" * 5).decode()}, JSON, PASSED),  # wrong size
    ("annotator", 1, {"labels": "***"}, JSON, PASSED),  # not base64
    ("annotator", 1, {"labels": 5}, JSON, PASSED),
    ("annotator", 1, {"seconds_spent": 1.0}, JSON, PASSED),
    ("annotator", 1, {**GOOD, "encoding": "gzip"}, JSON, PASSED),
    ("annotator", 1, {**GOOD, "seconds_spent": -1}, JSON, PASSED),
    ("annotator", 1, {**GOOD, "seconds_spent": "2.5"}, JSON, PASSED),
    ("annotator", 1, {**GOOD, "seconds_spent": True}, JSON, PASSED),
    ("annotator", 1, b'{"labels": "AQ==", "seconds_spent": NaN}', JSON, PASSED),
    ("annotator", 1, b"[1, 2]", JSON, PASSED),
    ("annotator", 1, b"{not json", JSON, PASSED),
    ("annotator", 1, GOOD, {"Content-Type": "application/x-www-form-urlencoded"}, PASSED),
    ("annotator", 1, GOOD, {**JSON, "Content-Length": None}, PASSED),  # DRF reads no body without it
    ("annotator", 1, GOOD, {**JSON, "Accept": "application/xml"}, PASSED),
    ("annotator", "next", None, {"Accept": "application/xml"}, PASSED),
    ("annotator", "foreign query", GOOD, JSON, PASSED),  # a query of another project: 404
    ("annotator", 99999, GOOD, JSON, PASSED),
    ("foreign", "next", None, {}, PASSED),
    ("foreign", 1, GOOD, JSON, PASSED),
    ("superuser", "next", None, {}, PASSED),
    ("inactive", "next", None, {}, PASSED),
    ("anonymous", "next", None, {}, PASSED),
    ("bad token", 1, GOOD, JSON, PASSED),
    ("session", "next", None, {}, PASSED),  # sessions need CSRF: Django's
    ("session and token", 1, GOOD, JSON, PASSED),
    ("annotator", "next", None, {"Host": "evil.example"}, PASSED),
]


def _request(world, target, body):
    project = world["project"].pk
    if target in ("next", "idle"):
        return f"/api/projects/{world['idle'].pk if target == 'idle' else project}/queries/next/", b""
    if target == "foreign query":
        path = f"/api/projects/{project}/queries/{_foreign_query(world).pk}/submit/"
    else:
        query_id = world["queries"][target].pk if target in (0, 1) else target
        path = f"/api/projects/{project}/queries/{query_id}/submit/"
    return path, body if isinstance(body, bytes) else json.dumps(body).encode()


def _foreign_query(world) -> Query:
    step = AcquisitionStep.objects.create(project=world["other"], number=1, state=State.ANNOTATING, strategy="tau",
                                          tau=1e-3, slices_per_step=1, k_uncertain=1, mc_samples=2)
    query = world["queries"][1]
    return Query.objects.create(step=step, scan=query.scan, z=2, height=4, width=4, mask=query.mask,
                                predicted=query.predicted, uncertainty=query.uncertainty, n_queried=4, n_pixels=16)


def _rolled_back(function):
    with transaction.atomic():
        result = function()
        transaction.set_rollback(True)
    return result


@pytest.mark.parametrize(("who", "target", "body", "extra", "expected"), REQUESTS)
def test_answers_equal_the_django_views(world, who, target, body, extra, expected):
    path, raw = _request(world, target, body)
    headers = {**world["headers"][who], **extra}
    django_app = CountingDjango()
    reference = _rolled_back(lambda: call(django_app, "POST", path, headers=headers, body=raw))
    fast = QueryFastPath(django_app, thread_sensitive=True)
    answer = call(fast, "POST", path, headers=headers, body=raw, chunks=2)  # the body read in parts, then replayed
    assert answer == reference
    assert django_app.calls == (1 if expected == SERVED else 2), f"expected: {expected}; got {answer}"


def test_a_served_answer_is_stored_with_its_provenance(world):
    query = world["queries"][1]
    status, _, body = call(QueryFastPath(CountingDjango(), thread_sensitive=True), "POST",
                           f"/api/projects/{world['project'].pk}/queries/{query.pk}/submit/",
                           headers={**world["headers"]["annotator"], **JSON}, body=json.dumps(GOOD).encode())
    assert status == 201 and json.loads(body)["status"] == "answered"
    query.refresh_from_db()
    assert (query.status, query.seconds_spent, query.answered_at) == ("answered", 3.5, NOW)
    stored = TrainingSlice.objects.get(query=query)
    assert np.array_equal(codec.unpack_mask(stored.answered, (4, 4)), MASK)


def test_revoked_membership_is_refused_at_once(world):
    fast = QueryFastPath(CountingDjango(), thread_sensitive=True)
    path = f"/api/projects/{world['project'].pk}/queries/next/"
    assert call(fast, "POST", path, headers=world["headers"]["lead"])[0] == 200
    Membership.objects.filter(role=Membership.Role.LEAD).delete()
    assert call(fast, "POST", path, headers=world["headers"]["lead"])[0] == 404


def test_switched_off_everything_goes_to_django(world, settings):
    settings.MYOLABEL_FAST_QUERIES = False
    django_app = CountingDjango()
    call(QueryFastPath(django_app, thread_sensitive=True), "POST", f"/api/projects/{world['project'].pk}/queries/next/",
         headers=world["headers"]["annotator"])
    assert django_app.calls == 1


def test_output_functions_match_the_documented_fields(world):
    query = Query.objects.select_related("step").get(pk=world["queries"][0].pk)
    assert list(query_output(query)) == list(QueryOutput().fields)
    assert list(submission_output(query)) == list(QuerySubmitApi.OutputSerializer().fields)
