"""Schemathesis against the API, in process: every operation, a fixed seed, bounded.

Each operation of the OpenAPI schema is one test (``test_api[POST /api/pools/]``) on a
fresh database holding a project with a pool, a scan with labels, a finished
segmentation and an annotating step with an open query. Schemathesis generates valid
and invalid requests (coverage and fuzzing phases); path ids are either generated or
those of that project, so requests reach the objects too. Sent as a superuser (token),
every answer must be no server error (5xx), and documented: its status, its content
type and its body's schema (``backend.core.schema`` documents the errors of every
operation).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import schemathesis
from django.core import signals
from django.core.cache import caches
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from backend.acquisition import codec
from backend.acquisition.models import AcquisitionStep, Query
from backend.acquisition.states import State
from backend.imaging.volumes import save_array
from backend.projects.models import Membership
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

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

SEED = 20261203
MAX_EXAMPLES = 50  # per operation and phase
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "suppress-health-check": ["all"],
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"examples": {"enabled": False}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
               "stateful": {"enabled": False}},
    # Health answers 503 (documented) while a service is down: no worker runs here.
    "operations": [{"include-path": "/api/health/",
                    "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}}}],
})
KNOWN: dict[str, int | str] = {}  # the ids of the current test's objects, by path parameter name


def _openapi() -> dict:
    """The schema /api/schema/ serves, generated without a request (no database needed)."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(generated))


schema = schemathesis.openapi.from_dict(_openapi(), config=CONFIG)
schema.app = get_wsgi_application()


@schema.hook
def flatmap_path_parameters(context, path_parameters: dict):
    """Generated path parameters, or the same with the ids of the test's project (when it has them)."""
    known = {name: KNOWN[name] for name in path_parameters or () if name in KNOWN}
    return st.sampled_from([path_parameters, {**path_parameters, **known}]) if known else st.just(path_parameters)


@pytest.fixture
def world(settings, tmp_path):
    """The superuser's headers; KNOWN holds the ids of a project with everything an endpoint reads."""
    use_tmp_storage(settings, tmp_path)
    settings.CELERY_TASK_ALWAYS_EAGER = False  # nothing is sent anyway: the test's transaction never commits
    root = UserFactory(username="fuzz-root", is_superuser=True, is_staff=True)
    label_set = LabelSetFactory(labels__n=3)
    pool = PoolFactory(name="fuzz pool")
    project = ProjectFactory(name="fuzz project", label_set=label_set, pools=[pool])
    MembershipFactory(project=project, user=root, role=Membership.Role.ADMIN)
    hu = np.linspace(-1000, 1500, 4 * 64 * 64).astype(np.int16).reshape(4, 64, 64)
    scan = scan_with_volume(pool, hu, labels=(hu > 0).astype(np.uint8), label_set=label_set)
    segmentation = segmentation_with_uncertainty(project, scan, np.full(hu.shape, 0.01, np.float32))
    segmentation.labels = save_array((hu > 0).astype(np.uint8), "acquisition/segmentations/labels.npy")
    segmentation.save(update_fields=["labels"])  # a finished segmentation has both maps
    step = AcquisitionStep.objects.create(project=project, number=1, state=State.ANNOTATING, strategy="tau",
                                          tau=1e-3, slices_per_step=1, k_uncertain=1, mc_samples=2)
    mask = np.zeros((64, 64), bool)
    mask[10:20, 10:20] = True
    query = Query.objects.create(step=step, scan=scan, z=1, height=64, width=64, mask=codec.pack_mask(mask),
                                 predicted=codec.pack_labels(np.ones((64, 64), np.uint8)),
                                 uncertainty=codec.pack_float16(np.full((64, 64), 0.2)), n_queried=100,
                                 n_pixels=64 * 64)
    KNOWN.clear()
    KNOWN.update(project_id=project.pk, pool_id=pool.pk, scan_id=scan.pk, step_id=step.pk, query_id=query.pk,
                 segmentation_id=segmentation.pk, version_id=segmentation.model_version_id,
                 label_set_id=label_set.pk, user_id=root.pk, z=1)
    # As Django's test client does: connection housekeeping at the end of a request would
    # close the test's connection (its transaction is the test's database state).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield {"Authorization": f"Token {Token.objects.create(user=root).key}"}
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
        for cache in caches.all():
            cache.clear()  # the token endpoint's throttle counts would outlive the test


@schema.parametrize()
def test_api(case, world):
    case.call_and_validate(headers=world, checks=CHECKS)
