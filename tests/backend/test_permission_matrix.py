"""Every API endpoint x every role x own and foreign project: who gets what.

The table below lists every (URL name, method) under /api/. ``test_every_api_endpoint_is_in_the_table``
enumerates the URL patterns at test time and fails when an endpoint is missing from the
table, so whoever adds an endpoint adds its row here.

Rules (backend.projects.access): anonymous callers are refused (401/403); a signed-in user
who is not a member of the project the object belongs to gets 404, exactly as for an object
that does not exist, so nobody learns that a foreign project, pool or scan exists; a member
whose role is below the row's ``need`` gets 403; superusers may do everything.

``ok`` is the status expected when access is granted. For endpoints whose behaviour
other test files own (acquisition, imports), ``ok=ALLOWED`` only asserts that access is
granted: any answer but 401, 403, 404 or a server error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from backend.acquisition import codec
from backend.acquisition.models import AcquisitionStep, Query
from backend.imaging.models import DicomWebArchive, ImportJob
from backend.imaging.volumes import save_array
from backend.projects.models import ROLE_RANK, Membership
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    scan_with_volume,
    segmentation_with_uncertainty,
)

ROLES = ("anonymous", "non-member", "annotator", "lead", "admin", "superuser")
ALLOWED = None  # any status but 401, 403, 404 and 5xx
PUBLIC, SIGNED_IN, STAFF = "public", "signed-in", "staff"  # needs that do not depend on a project
A, L, ADM = Membership.Role.ANNOTATOR, Membership.Role.LEAD, Membership.Role.ADMIN


@dataclass(frozen=True)
class Row:
    name: str
    method: str
    need: str  # PUBLIC, SIGNED_IN, STAFF or the lowest project role that may do it
    ok: int | tuple[int, ...] | None
    body: Any = None  # dict, or a callable (world, side) -> dict
    multipart: bool = False
    headers: dict = field(default_factory=dict)

    @property
    def global_(self) -> bool:
        return self.need in (PUBLIC, SIGNED_IN, STAFF)


def _side(key):
    return lambda world, side: world[side][key]


TABLE = [
    # --- docs, health, auth (core) ---
    Row("schema", "GET", PUBLIC, 200),
    Row("api-docs", "GET", PUBLIC, 200),
    Row("health", "GET", PUBLIC, (200, 503)),  # 503: no worker runs in unit tests
    Row("diagnostics-ping", "POST", STAFF, 202, {"steps": 1}),
    Row("auth-token", "POST", PUBLIC, 200, {"username": "lead", "password": "pw-123456"}),
    # --- projects, members, label sets ---
    Row("project-list", "GET", SIGNED_IN, 200),
    Row("project-list", "POST", SIGNED_IN, 201, {"name": "a new project"}),
    Row("project-detail", "GET", A, 200),
    Row("project-detail", "PATCH", L, 200, {"tau": 0.001, "slices_per_step": 3}),
    Row("project-detail", "DELETE", ADM, 204),
    Row("project-members", "GET", A, 200),
    Row("project-members", "POST", ADM, 201, {"username": "newcomer", "role": "annotator"}),
    Row("project-member-detail", "PATCH", ADM, 200, {"role": "lead"}),
    Row("project-member-detail", "DELETE", ADM, 204),
    Row("project-label", "PATCH", ADM, 200, {"colour": "#123456"}),
    Row("label-set-list", "GET", SIGNED_IN, 200),
    Row("label-set-list", "POST", SIGNED_IN, 201,
        {"name": "new set", "labels": [{"value": 1, "name": "femur", "kind": "bone", "colour": "#ffeeaa"}]}),
    Row("label-set-detail", "GET", SIGNED_IN, 200),
    # --- pools, scans, slices ---
    Row("pool-list", "GET", SIGNED_IN, 200),
    Row("pool-list", "POST", ADM, 201, lambda w, side: {"project": w[side]["project"].pk, "name": "new pool"}),
    Row("pool-detail", "GET", A, 200),
    Row("pool-detail", "PATCH", ADM, 200, {"description": "renamed"}),
    Row("pool-detail", "DELETE", ADM, 204),
    Row("pool-scans", "GET", A, 200),
    Row("scan-detail", "GET", A, 200),
    Row("scan-slice-png", "GET", A, 200),
    Row("scan-slice-raw", "GET", A, 200),
    Row("scan-labels-png", "GET", A, 200),
    Row("scan-labels-raw", "GET", A, 200),
    Row("scan-uncertainty-png", "GET", A, 200),
    Row("scan-uncertainty-raw", "GET", A, 200),
    # --- acquisition (behaviour tested in the acquisition test files) ---
    Row("acq-steps", "GET", A, ALLOWED),
    Row("acq-steps", "POST", L, ALLOWED, {}),
    Row("acq-step", "GET", A, ALLOWED),
    Row("acq-step-cancel", "POST", L, ALLOWED, {}),
    Row("acq-step-queries", "GET", A, ALLOWED),
    Row("acq-settings", "GET", A, ALLOWED),
    Row("acq-settings", "PATCH", L, ALLOWED, {}),
    Row("acq-tau-preview", "GET", L, ALLOWED),
    Row("acq-mac", "GET", L, ALLOWED),
    Row("acq-step-cost", "GET", L, ALLOWED),
    Row("acq-training-set", "GET", A, ALLOWED),
    Row("acq-training-set-seed", "POST", L, ALLOWED, {}),
    Row("acq-training-set-export", "GET", L, ALLOWED),
    Row("acq-held-out", "GET", L, 200),
    Row("acq-held-out", "POST", L, ALLOWED, {"per_scan": 1}),
    Row("acq-held-out", "DELETE", L, ALLOWED),
    Row("acq-query-next", "POST", A, ALLOWED, {}),
    Row("acq-query", "GET", A, ALLOWED),
    Row("acq-query-nearby", "GET", A, ALLOWED),
    Row("acq-query-reformat", "GET", A, ALLOWED),
    Row("acq-query-reformat-labels", "GET", A, ALLOWED),
    Row("acq-query-slice-labels", "GET", A, ALLOWED),
    Row("acq-query-claim", "POST", A, ALLOWED, {}),
    Row("acq-query-release", "POST", A, ALLOWED, {}),
    Row("acq-query-submit", "POST", A, ALLOWED, {}),
    Row("acq-models", "GET", A, ALLOWED),
    Row("acq-model", "GET", A, ALLOWED),
    Row("acq-model-checkpoint", "GET", L, ALLOWED),
    Row("acq-model-import", "POST", L, ALLOWED, {}),
    Row("acq-segmentations", "GET", A, ALLOWED),
    Row("acq-segmentations", "POST", A, ALLOWED, lambda w, side: {"scan_id": w[side]["scan"].pk}),
    Row("acq-segmentation", "GET", A, ALLOWED),
    Row("acq-segmentation-file", "GET", A, ALLOWED),
    # --- biomechanics (behaviour tested in test_meshes_api.py, test_report_api.py, test_slicer_api.py) ---
    Row("acq-segmentation-meshes-zip", "GET", A, 200),
    Row("acq-segmentation-meshes", "GET", A, 200),
    Row("acq-segmentation-muscle-report-csv", "GET", A, 200),
    Row("acq-segmentation-muscle-report-html", "GET", A, 200),
    Row("acq-segmentation-seg-nrrd", "GET", A, 200),
    Row("acq-reference-seg-nrrd", "POST", L, ALLOWED, lambda w, side: {
        "scan_id": w[side]["scan"].pk, "file": SimpleUploadedFile("x.seg.nrrd", b"not a segmentation")},
        multipart=True),
    # --- CT imports (behaviour tested in test_import_*.py); jobs belong to the caller ---
    Row("import-create", "POST", L, ALLOWED, lambda w, side: {
        "pool": w[side]["pool"].pk, "files": [SimpleUploadedFile("ct.nii.gz", b"not a real image")]},
        multipart=True),
    Row("import-upload-start", "POST", L, ALLOWED, lambda w, side: {"pool": w[side]["pool"].pk}),
    Row("import-job", "GET", L, ALLOWED),
    Row("import-job", "DELETE", L, ALLOWED),
    Row("import-chunk", "GET", L, ALLOWED),
    Row("import-chunk", "PUT", L, ALLOWED, b"0123", headers={"HTTP_CONTENT_RANGE": "bytes 0-3/4"}),
    Row("import-complete", "POST", L, ALLOWED, {}),
    Row("import-retry", "POST", L, ALLOWED, {}),
    # --- PACS (behaviour tested in test_pacs_*.py against Orthanc; here the archive does not answer).
    # Every user of this world administers a project of their own, so listing and searching
    # archives (leads / admins anywhere) is open to all of them; configuring is for superusers.
    Row("pacs-archives", "GET", SIGNED_IN, 200),
    Row("pacs-archives", "POST", STAFF, 400, {"name": "new", "url": "http://127.0.0.1:9/dicom-web"}),
    Row("pacs-archive", "GET", SIGNED_IN, 200),
    Row("pacs-archive", "PATCH", STAFF, 400, {"name": "renamed"}),
    Row("pacs-archive", "DELETE", STAFF, 204),
    Row("pacs-studies", "GET", SIGNED_IN, 502),
    Row("pacs-series", "GET", SIGNED_IN, 502, {"study_uid": "1.2.3"}),
    Row("pacs-import", "POST", ADM, 202, lambda w, side: {
        "pool": w[side]["pool"].pk, "study_uid": "1.2.3", "series_uids": ["1.2.3.4"]}),
    Row("acq-segmentation-pacs", "POST", L, ALLOWED, lambda w, side: {"archive": w["archive"].pk}),
]


def _api_patterns(patterns=None, prefix=""):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from _api_patterns(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern) and (prefix + str(pattern.pattern)).startswith("api/"):
            yield prefix + str(pattern.pattern), pattern


def _endpoints() -> set[tuple[str, str]]:
    found = set()
    for route, pattern in _api_patterns():
        view = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
        assert view is not None and pattern.name, f"api/{route}: give it a class-based view and a URL name"
        found |= {(pattern.name, m.upper()) for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)}
    return found


def test_every_api_endpoint_is_in_the_table():
    table = {(row.name, row.method) for row in TABLE}
    missing = sorted(_endpoints() - table)
    stale = sorted(table - _endpoints())
    assert not missing, f"add these endpoints to TABLE in {__name__}: {missing}"
    assert not stale, f"these TABLE rows name no endpoint any more: {stale}"
    assert len(table) == len(TABLE), "a (name, method) appears twice in TABLE"


# --- the world: an own project the acting user belongs to, and a foreign one ---------------


def _project_side(tag: str) -> dict:
    label_set = LabelSetFactory(labels__n=2)
    pool = PoolFactory(name=f"{tag} pool")
    project = ProjectFactory(name=f"{tag} project", label_set=label_set, pools=[pool])
    hu = np.arange(3 * 8 * 8, dtype=np.int16).reshape(3, 8, 8)
    scan = scan_with_volume(pool, hu, name=f"{tag} scan", labels=(hu % 3).astype(np.uint8), label_set=label_set)
    segmentation = segmentation_with_uncertainty(project, scan, np.zeros(hu.shape, np.float32))
    segmentation.labels = save_array((hu % 3).astype(np.uint8), "acquisition/segmentations/labels.npy")
    segmentation.save(update_fields=["labels"])  # a finished segmentation has both maps
    step = AcquisitionStep.objects.create(project=project, number=1, strategy="tau", tau=1e-3, slices_per_step=1,
                                          k_uncertain=2, mc_samples=2)
    query = Query.objects.create(step=step, scan=scan, z=1, height=8, width=8,
                                 mask=codec.pack_mask(np.ones((8, 8), bool)),
                                 predicted=codec.pack_labels(np.zeros((8, 8), np.uint8)),
                                 uncertainty=codec.pack_float16(np.zeros((8, 8), np.float32)),
                                 n_queried=64, n_pixels=64)
    target = MembershipFactory(project=project, role=A).user  # the member the member endpoints change
    MembershipFactory(project=project, role=ADM)  # another admin, so removing one is allowed
    return {"project": project, "pool": pool, "scan": scan, "label_set": label_set, "step": step,
            "query": query, "version": segmentation.model_version, "segmentation": segmentation,
            "target": target}


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory):
    """Built once for the module inside a transaction that is rolled back at its end; every
    test runs in a savepoint of it, so what a test changes is undone before the next one."""
    tmp = tmp_path_factory.mktemp("matrix")
    paths = {key: tmp / key for key in ("media", "staging", "upload-tmp", "cache")}
    for path in paths.values():
        path.mkdir()
    overrides = override_settings(
        MEDIA_ROOT=paths["media"], MYOLABEL_STAGING_DIR=paths["staging"], FILE_UPLOAD_TEMP_DIR=str(paths["upload-tmp"]),
        MYOLABEL_CACHE_DIR=paths["cache"], CELERY_TASK_ALWAYS_EAGER=True,
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
    with overrides, django_db_blocker.unblock(), transaction.atomic():
        users = {"non-member": UserFactory(username="outsider"),
                 "superuser": UserFactory(username="root", is_superuser=True, is_staff=True)}
        own, foreign = _project_side("own"), _project_side("foreign")
        for role in (A, L, ADM):
            users[role] = MembershipFactory(project=own["project"], role=role, user=UserFactory(username=role)).user
        UserFactory(username="newcomer")
        shared = PoolFactory(name="shared pool")  # used by both projects: only a superuser administers it all
        for side in (own, foreign):
            side["project"].pools.add(shared)
        homes = {}  # a project each user made and administers, to attach pools to
        for role, user in users.items():
            homes[role] = ProjectFactory(name=f"home of {role}")
            MembershipFactory(project=homes[role], user=user, role=ADM)
        archive = DicomWebArchive.objects.create(name="unreachable", url="http://127.0.0.1:9/dicom-web")
        yield {"users": users, "own": own, "foreign": foreign, "tmp": tmp, "shared": shared, "homes": homes,
               "archive": archive}
        transaction.set_rollback(True)


def _import_job(world, side: str, user) -> ImportJob:
    staging = world["tmp"] / "staging" / f"job-{side}"
    (staging / "files").mkdir(parents=True, exist_ok=True)
    (staging / "files" / "ct.nii.gz").write_bytes(b"0123")
    (staging / "options").write_text("")
    return ImportJob.objects.create(pool=world[side]["pool"], created_by=user, staging_dir=str(staging))


def _url(row: Row, world, side: str, user) -> str:
    route = next(str(p.pattern) for _, p in _api_patterns() if p.name == row.name)
    w = world[side]
    values = {"project_id": w["project"].pk, "pool_id": w["pool"].pk, "scan_id": w["scan"].pk, "z": 1,
              "user_id": w["target"].pk, "label_set_id": w["label_set"].pk, "step_id": w["step"].pk,
              "query_id": w["query"].pk, "version_id": w["version"].pk, "segmentation_id": w["segmentation"].pk,
              "kind": "report.csv", "name": "ct.nii.gz", "value": 1}
    values["archive_id"] = world["archive"].pk
    if "job_id" in route:
        values["job_id"] = _import_job(world, side, user).pk
    kwargs = {key: value for key, value in values.items() if f"{key}>" in route}
    return reverse(row.name, kwargs=kwargs)


def _expected(row: Row, role: str, side: str) -> set[int] | None:
    """Allowed statuses; None means "access granted" (see ALLOWED)."""
    granted = row.ok if row.ok is None else set(row.ok) if isinstance(row.ok, tuple) else {row.ok}
    if row.need == PUBLIC:
        return granted
    if role == "anonymous":
        return {401, 403}
    if row.need == SIGNED_IN:
        return granted
    if row.need == STAFF:
        return granted if role == "superuser" else {403}
    if role == "superuser":
        return granted
    if role == "non-member" or side == "foreign":
        return {404}
    return granted if ROLE_RANK[role] >= ROLE_RANK[row.need] else {403}


def _call(client: APIClient, row: Row, url: str, world, side: str):
    body = row.body(world, side) if callable(row.body) else row.body
    method = getattr(client, row.method.lower())
    if isinstance(body, bytes):
        return method(url, body, content_type="application/octet-stream", **row.headers)
    if row.multipart:
        return method(url, body, format="multipart", **row.headers)
    return method(url, body, format="json", **row.headers) if body is not None else method(url, **row.headers)


CASES = [(row, role, side) for row in TABLE for role in ROLES
         for side in (("own",) if row.global_ else ("own", "foreign"))]


@pytest.mark.parametrize(("row", "role", "side"), CASES,
                         ids=[f"{r.method}-{r.name}-{role}-{side}" for r, role, side in CASES])
def test_permission(world, db, row, role, side):
    client = APIClient()
    user = world["users"].get(role) if role != "anonymous" else None
    if user is not None:
        client.force_authenticate(user)
    url = _url(row, world, side, user)
    response = _call(client, row, url, world, side)
    expected = _expected(row, role, side)
    detail = getattr(response, "data", None) or ("(streamed)" if response.streaming else response.content[:200])
    if expected is None:
        assert response.status_code not in {401, 403, 404} and response.status_code < 500, (
            f"{row.method} {url} as {role}: access should be granted, got {response.status_code}: {detail}")
    else:
        assert response.status_code in expected, (
            f"{row.method} {url} as {role} ({side}): expected {sorted(expected)}, got {response.status_code}: {detail}")


@pytest.mark.parametrize("name", ["project-list", "pool-list"])
def test_lists_never_name_foreign_objects(world, db, name):
    for role in ("non-member", A, L, ADM):
        client = APIClient()
        client.force_authenticate(world["users"][role])
        text = client.get(reverse(name)).content.decode()
        assert "foreign" not in text, f"{name} shows a foreign object to {role}: {text[:300]}"
