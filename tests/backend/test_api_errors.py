"""One error shape for every API error; identifiers out of range; releasing a query held by another.

Every error body is ``{"detail": <sentence>, "code": <machine code>}``, plus ``errors``
(``{field: [messages]}``) when the request's fields were refused (docs/api-acquisition.md).
"""

from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from backend.acquisition import codec
from backend.acquisition.models import AcquisitionStep, Query, Segmentation, TrainingSlice
from backend.acquisition.states import State
from backend.imaging.models import ImportJob, Pool
from backend.projects.models import Membership, Project
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

pytestmark = pytest.mark.django_db
Role = Membership.Role

HUGE = [2**63, 2**64, 10**30]  # 2**63 is the first value no database id column holds
OUT_OF_RANGE = [*HUGE, 0, -1]
MASK = np.zeros((4, 4), bool)
MASK[0, :] = True


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


@pytest.fixture
def world():
    """A project with a pool, a scan (labels and an uncertainty map), an annotating step of one query."""
    label_set = LabelSetFactory(labels__n=3)
    pool = PoolFactory()
    project = ProjectFactory(label_set=label_set, pools=[pool])
    hu = np.zeros((3, 4, 4), np.int16)
    scan = scan_with_volume(pool, hu, labels=np.ones(hu.shape, np.uint8), label_set=label_set)
    segmentation = segmentation_with_uncertainty(project, scan, np.full(hu.shape, 0.1, np.float32))
    step = AcquisitionStep.objects.create(project=project, number=1, state=State.ANNOTATING, strategy="tau",
                                          tau=1e-3, slices_per_step=1, k_uncertain=1, mc_samples=2)
    query = Query.objects.create(step=step, scan=scan, z=0, height=4, width=4, mask=codec.pack_mask(MASK),
                                 predicted=codec.pack_labels(np.full((4, 4), 2, np.uint8)),
                                 uncertainty=codec.pack_float16(np.full((4, 4), 0.25)), n_queried=4, n_pixels=16)
    users = {role: MembershipFactory(project=project, role=role).user for role in (Role.ADMIN, Role.ANNOTATOR)}
    users["other annotator"] = MembershipFactory(project=project, role=Role.ANNOTATOR).user
    users["superuser"] = UserFactory(is_superuser=True, is_staff=True)
    return {"project": project, "pool": pool, "scan": scan, "query": query, "label_set": label_set,
            "segmentation": segmentation, "users": users}


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def assert_error(response, status: int, code: str, *words: str) -> dict:
    """The response is ``status`` with the documented error shape, ``code`` and a detail naming ``words``."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    body = response.json()
    assert set(body) <= {"detail", "code", "errors"} and isinstance(body["detail"], str), body
    assert body["code"] == code, body
    for word in words:
        assert word in body["detail"], (word, body)
    return body


def _counts() -> dict:
    models = (Project, Pool, Membership, AcquisitionStep, Query, TrainingSlice, Segmentation, ImportJob)
    return {model.__name__: model.objects.count() for model in models}


# --- item 6: identifiers out of range ---------------------------------------------------------


def _api_routes() -> list[tuple[str, type]]:
    """(route, view class) of every API URL pattern that has an identifier in its path."""
    found = []

    def walk(patterns, prefix: str):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/") and "<" in route:
                view = getattr(pattern.callback, "view_class", None) or pattern.callback.cls
                found.append((route, view))

    walk(get_resolver().url_patterns, "")
    return found


def _path(route: str, value: int, world) -> str:
    """``route`` with ``value`` as its first identifier, real objects for the others."""
    own = {"project_id": world["project"].pk, "pool_id": world["pool"].pk, "scan_id": world["scan"].pk,
           "query_id": world["query"].pk, "segmentation_id": world["segmentation"].pk,
           "version_id": world["segmentation"].model_version_id, "label_set_id": world["label_set"].pk,
           "user_id": world["users"][Role.ADMIN].pk, "step_id": world["query"].step_id, "job_id": 1,
           "archive_id": 1, "z": 0, "kind": "report.csv", "name": "a.dcm", "value": 1}
    first = []

    def fill(match):
        name = match.group(2)
        if not first and name not in ("z", "kind", "name", "value"):  # value: a label's, not an id
            first.append(name)
            return str(value)
        return str(own[name])

    return "/" + re.sub(r"<(\w+:)?(\w+)>", fill, route)


def _methods(view) -> list[str]:
    return [m for m in ("get", "post", "patch", "put", "delete") if hasattr(view, m)]


def test_every_route_with_an_identifier_is_checked():
    routes = {route for route, _ in _api_routes()}
    for listed in ("api/projects/<id:project_id>/", "api/projects/<id:project_id>/steps/",
                   "api/projects/<id:project_id>/queries/next/", "api/pools/<id:pool_id>/"):
        assert listed in routes, sorted(routes)
    assert len(routes) >= 30


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_identifiers_out_of_range_in_a_path_are_404(world, value):
    client = client_for(world["users"]["superuser"])
    before = _counts()
    for route, view in _api_routes():
        path = _path(route, value, world)
        for method in _methods(view):
            response = getattr(client, method)(path, {}, format="json")
            assert_error(response, 404, "not_found")
    assert _counts() == before


@pytest.mark.parametrize("value", HUGE)
def test_the_listed_paths_answer_404_to_a_member_too(world, value):
    client = client_for(world["users"][Role.ANNOTATOR])
    project = world["project"].pk
    for path in (f"/api/projects/{value}/", f"/api/projects/{value}/steps/", f"/api/pools/{value}/",
                 f"/api/projects/{project}/queries/{value}/", f"/api/scans/{value}/slices/0.png"):
        assert_error(client.get(path), 404, "not_found", "no API endpoint")
    assert_error(client.post(f"/api/projects/{value}/queries/next/"), 404, "not_found")
    assert Query.objects.get().assignee_id is None


def _bodies(world) -> list[tuple[str, str, str, dict]]:
    """(method, path, field, body or query) where ``field`` holds an identifier; ``ID`` marks the value."""
    project, scan, pool = world["project"].pk, world["scan"].pk, world["pool"].pk
    return [
        ("get", f"/api/scans/{scan}/labels/0.png", "label_set", {"label_set": "ID"}),
        ("get", f"/api/scans/{scan}/labels/0.raw", "label_set", {"label_set": "ID"}),
        ("get", f"/api/scans/{scan}/uncertainty/0.png", "project", {"project": "ID"}),
        ("get", f"/api/scans/{scan}/uncertainty/0.raw", "project", {"project": "ID"}),
        ("post", "/api/pools/", "project", {"project": "ID", "name": "new pool"}),
        ("post", "/api/projects/", "label_set", {"name": "new project", "label_set": "ID"}),
        ("post", "/api/projects/", "pools", {"name": "new project", "pools": ["ID"]}),
        ("post", "/api/projects/", "test_scans", {"name": "new project", "test_scans": ["ID"]}),
        ("patch", f"/api/projects/{project}/", "pools", {"pools": [pool, "ID"]}),
        ("patch", f"/api/projects/{project}/", "test_scans", {"test_scans": ["ID"]}),
        ("post", f"/api/projects/{project}/segmentations/", "scan_id", {"scan_id": "ID"}),
        ("post", f"/api/projects/{project}/segmentations/", "model_version_id",
         {"scan_id": scan, "model_version_id": "ID"}),
        ("post", f"/api/projects/{project}/models/import/", "from_model_version", {"from_model_version": "ID"}),
        ("post", "/api/imports/uploads/", "pool", {"pool": "ID"}),
        ("post", "/api/imports/uploads/", "label_set", {"pool": pool, "label_set": "ID"}),
    ]


def _with(value, body: dict) -> dict:
    def put(item):
        return value if item == "ID" else [put(i) for i in item] if isinstance(item, list) else item

    return {key: put(item) for key, item in body.items()}


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_identifiers_out_of_range_in_a_body_or_query_are_400(world, value):
    client = client_for(world["users"][Role.ADMIN])
    before = _counts()
    for method, path, field, body in _bodies(world):
        data = _with(value, body)
        response = client.get(path, data) if method == "get" else getattr(client, method)(path, data, format="json")
        found = assert_error(response, 400, "invalid", field)
        assert field in found["errors"], (path, found)
        message = " ".join(found["errors"][field])
        assert "9223372036854775807" in message or "does not exist" in message, (path, message)
    assert _counts() == before


# --- item 17: releasing a query -----------------------------------------------------------


def _release(client, query):
    return client.post(f"/api/projects/{query.step.project_id}/queries/{query.pk}/release/")


def test_releasing_a_query_held_by_another_annotator_is_409_and_the_lock_stays(world):
    query, users = world["query"], world["users"]
    holder = client_for(users[Role.ANNOTATOR])
    assert holder.post(f"/api/projects/{world['project'].pk}/queries/{query.pk}/claim/").status_code == 200
    held = Query.objects.values("assignee", "lock_expires", "claimed_at").get(pk=query.pk)
    response = _release(client_for(users["other annotator"]), query)
    assert_error(response, 409, "query_locked", f"query {query.pk}", "only its holder can release it")
    assert Query.objects.values("assignee", "lock_expires", "claimed_at").get(pk=query.pk) == held
    assert _release(holder, query).status_code == 204
    assert Query.objects.values_list("assignee", "lock_expires").get(pk=query.pk) == (None, None)


def test_a_free_query_or_an_expired_lock_of_another_can_be_released_without_change(world):
    query, users = world["query"], world["users"]
    other = client_for(users["other annotator"])
    assert _release(other, query).status_code == 204  # nothing held: nothing to do
    expired = timezone.now() - timedelta(minutes=1)
    Query.objects.filter(pk=query.pk).update(assignee=users[Role.ANNOTATOR], lock_expires=expired)
    assert _release(other, query).status_code == 204
    assert Query.objects.values_list("assignee", "lock_expires").get(pk=query.pk) == (users[Role.ANNOTATOR].pk,
                                                                                      expired)


def test_releasing_an_answered_query_is_409_closed(world):
    query = world["query"]
    Query.objects.filter(pk=query.pk).update(status=Query.Status.ANSWERED, assignee=world["users"][Role.ANNOTATOR])
    response = _release(client_for(world["users"][Role.ANNOTATOR]), query)
    assert_error(response, 409, "query_closed", "answered")
    assert Query.objects.get(pk=query.pk).status == Query.Status.ANSWERED


# --- item 19: one error shape -------------------------------------------------------------


def test_field_errors_come_inside_the_error_shape(world):
    client = client_for(world["users"][Role.ADMIN])
    before = _counts()
    body = assert_error(client.patch(f"/api/projects/{world['project'].pk}/", {"tau": -1, "mc_samples": 1},
                                     format="json"), 400, "invalid", "tau:", "mc_samples:")
    assert set(body["errors"]) == {"tau", "mc_samples"}
    assert "greater than or equal to 2" in body["errors"]["mc_samples"][0]
    nested = {"name": "broken", "labels": [{"value": 1, "name": "a", "colour": "#000000"},
                                           {"value": 999, "name": "b", "colour": "red"}]}
    body = assert_error(client.post("/api/label-sets/", nested, format="json"), 400, "invalid", "labels.1.value")
    assert set(body["errors"]) == {"labels.1.value", "labels.1.colour"}
    assert all(isinstance(m, str) for messages in body["errors"].values() for m in messages)
    assert _counts() == before


def test_a_service_refusal_and_a_domain_error_use_the_same_shape(world):
    admin = client_for(world["users"][Role.ADMIN])
    members = f"/api/projects/{world['project'].pk}/members/"
    body = assert_error(admin.post(members, {"username": "nobody", "role": "lead"}, format="json"), 400, "invalid")
    assert list(body["errors"]) == ["username"]
    query = world["query"]
    body = assert_error(admin.post(f"/api/projects/{world['project'].pk}/queries/{query.pk}/submit/",
                                   {"labels": "***"}, format="json"), 400, "bad_encoding", "not valid base64")
    assert "errors" not in body
    assert_error(admin.post(f"/api/projects/{world['project'].pk}/steps/"), 409, "step_running")


def test_not_found_forbidden_unauthenticated_and_bad_json_use_the_same_shape(world):
    project = world["project"].pk
    annotator = client_for(world["users"][Role.ANNOTATOR])
    assert_error(annotator.get(f"/api/projects/{project}/steps/98765/"), 404, "not_found")
    assert_error(client_for(UserFactory()).get(f"/api/projects/{project}/"), 404, "not_found", "No project")
    assert_error(annotator.delete(f"/api/projects/{project}/"), 403, "permission_denied", "admin role")
    assert_error(APIClient().get("/api/projects/"), 403, "not_authenticated")
    assert_error(annotator.generic("POST", "/api/label-sets/", "{not json", content_type="application/json"),
                 400, "parse_error", "JSON")
    assert_error(annotator.put("/api/projects/", {}, format="json"), 405, "method_not_allowed", "PUT")
    assert_error(annotator.get("/api/no-such-thing/"), 404, "not_found", "/api/no-such-thing/")
    body = assert_error(annotator.get("/api/projects/", HTTP_HOST="evil.example"), 400, "bad_request")
    assert "ALLOWED_HOSTS" not in body["detail"]


def test_a_body_over_the_size_limit_is_413_and_stores_nothing(world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = client_for(world["users"][Role.ADMIN])
    before = _counts()
    response = client.post("/api/pools/", {"project": world["project"].pk, "name": "x" * 2000}, format="json")
    assert_error(response, 413, "too_large", "larger than the 1000 bytes", "DATA_UPLOAD_MAX_MEMORY_SIZE")
    assert _counts() == before


def test_errors_of_binary_endpoints_are_json_whatever_the_client_accepts(world):
    admin = client_for(world["users"][Role.ADMIN])
    scan = world["scan"].pk
    assert_error(admin.get(f"/api/scans/{scan}/slices/9.png", HTTP_ACCEPT="image/png"), 404, "not_found",
                 "z=9 is outside")
    assert_error(admin.get(f"/api/scans/{scan}/slices/9.raw", HTTP_ACCEPT="application/octet-stream"), 404,
                 "not_found")
    version = world["segmentation"].model_version_id
    path = f"/api/projects/{world['project'].pk}/models/{version}/checkpoint/"
    assert_error(client_for(world["users"][Role.ANNOTATOR]).get(path, HTTP_ACCEPT="application/octet-stream"),
                 403, "permission_denied")


def test_the_checkpoint_is_an_octet_stream_attachment(world):
    version = world["segmentation"].model_version
    path = f"/api/projects/{world['project'].pk}/models/{version.pk}/checkpoint/"
    for accept in (None, "application/octet-stream", "*/*"):
        extra = {"HTTP_ACCEPT": accept} if accept else {}
        response = client_for(world["users"][Role.ADMIN]).get(path, **extra)
        assert response.status_code == 200, (accept, response.status_code)
        assert response["Content-Type"] == "application/octet-stream"
        assert response["Content-Disposition"] == (
            f'attachment; filename="project-{world["project"].pk}-model-{version.number}.pt"')
        assert b"".join(response.streaming_content) == b"not a checkpoint"
