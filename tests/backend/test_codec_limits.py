"""A zlib bomb in a query submission is refused after inflating one raster's worth of bytes.

The bomb is the issue's: about 1.4 MB of zlib that inflates to about 1.4 GB. It goes
through the DRF view, which answers 400 ``labels_too_large`` at once; the request's
memory peak stays a few MB above the raster, and nothing is stored.
"""

from __future__ import annotations

import base64
import json
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from rest_framework.test import APIClient

from backend.acquisition import codec
from backend.acquisition.models import AcquisitionStep, Query, TrainingSlice
from backend.acquisition.states import State
from backend.projects.models import Membership
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    scan_with_volume,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db

SHAPE = (512, 512)  # an imported CT slice
RASTER = SHAPE[0] * SHAPE[1]
BOMB_INFLATED = 1400 * 2**20
MB = 2**20


@pytest.fixture(scope="module")
def bomb() -> str:
    """base64 of ~1.4 MB of zlib that inflates to 1.4 GiB of zeros (built in 1 MiB pieces)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_RLE)
    zeros = bytes(MB)
    stream = b"".join(deflate.compress(zeros) for _ in range(BOMB_INFLATED // MB)) + deflate.flush()
    assert 1.2 * 10**6 < len(stream) < 1.6 * 10**6
    return base64.b64encode(stream).decode()


@pytest.fixture
def world(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)
    pool = PoolFactory()
    project = ProjectFactory(label_set=LabelSetFactory(labels__n=3), pools=[pool])
    scan = scan_with_volume(pool, np.zeros((2, *SHAPE), np.int16))
    step = AcquisitionStep.objects.create(project=project, number=1, state=State.ANNOTATING, strategy="tau",
                                          tau=1e-3, slices_per_step=1, k_uncertain=1, mc_samples=2)
    mask = np.zeros(SHAPE, bool)
    mask[100:110, 200:220] = True
    query = Query.objects.create(step=step, scan=scan, z=1, height=SHAPE[0], width=SHAPE[1],
                                 mask=codec.pack_mask(mask), predicted=codec.pack_labels(np.ones(SHAPE, np.uint8)),
                                 uncertainty=codec.pack_float16(np.zeros(SHAPE)), n_queried=int(mask.sum()),
                                 n_pixels=RASTER)
    annotator = MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user
    return {"project": project, "query": query, "mask": mask, "annotator": annotator,
            "path": f"/api/projects/{project.pk}/queries/{query.pk}/submit/"}


def _unchanged(query: Query) -> None:
    fields = ("status", "assignee_id", "answer", "answered_by_id", "answered_at", "seconds_spent")
    stored = Query.objects.get(pk=query.pk)
    assert [getattr(stored, f) for f in fields] == [getattr(query, f) for f in fields]
    assert stored.status == Query.Status.OPEN
    assert not TrainingSlice.objects.exists()


def _measured(send) -> tuple[object, int, float]:
    """(result of ``send()``, peak bytes allocated while it ran, seconds it took)."""
    tracemalloc.start()
    try:
        started = time.perf_counter()
        result = send()
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak, seconds


def _assert_refused(status: int, body: dict, peak: int, seconds: float, request_bytes: int) -> None:
    assert status == 400, body
    assert body["code"] == "labels_too_large", body
    assert body["detail"] == (f"the zlib labels inflate to more than the slice's {RASTER} pixels (one uint8 each); "
                              "send exactly one value per pixel")
    # The request is held a few times over (body, parsed JSON, base64-decoded; the fast
    # path reads it, then hands it to Django, which reads it again); the inflated data
    # adds one raster, not the 1.4 GB the stream would make.
    assert peak < RASTER + 5 * request_bytes + 4 * MB, f"peak {peak / MB:.1f} MB"
    assert seconds < 5, seconds


def _warm(client, path: str, **headers) -> None:
    """One small refused submission first: the first request's imports are not the request's memory."""
    response = client.post(path, {"labels": "AAAA", "encoding": "zlib"}, format="json", **headers)
    assert response.status_code == 400


def test_the_view_refuses_a_zlib_bomb_quickly_in_bounded_memory(world, bomb):
    client = APIClient()
    client.force_authenticate(world["annotator"])
    _warm(client, world["path"])
    raw = json.dumps({"labels": bomb, "encoding": "zlib", "seconds_spent": 3.0}).encode()
    response, peak, seconds = _measured(lambda: client.generic("POST", world["path"], raw,
                                                               content_type="application/json"))
    _assert_refused(response.status_code, response.json(), peak, seconds, len(raw))
    _unchanged(world["query"])


@pytest.mark.parametrize("extra", [1, 1000])
def test_one_byte_too_many_is_refused_and_an_exact_raster_is_stored(world, extra):
    client = APIClient()
    client.force_authenticate(world["annotator"])
    labels = np.where(world["mask"], 2, 255).astype(np.uint8).tobytes()
    too_long = base64.b64encode(zlib.compress(labels + b"\xff" * extra)).decode()
    response = client.post(world["path"], {"labels": too_long, "encoding": "zlib"}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "labels_too_large")
    _unchanged(world["query"])
    exact = base64.b64encode(zlib.compress(labels)).decode()
    response = client.post(world["path"], {"labels": exact, "encoding": "zlib"}, format="json")
    assert response.status_code == 201, response.json()
    assert TrainingSlice.objects.get(query=world["query"]).height == SHAPE[0]


def test_a_truncated_zlib_stream_is_bad_encoding(world):
    client = APIClient()
    client.force_authenticate(world["annotator"])
    stream = zlib.compress(np.full(RASTER, 255, np.uint8).tobytes())
    response = client.post(world["path"], {"labels": base64.b64encode(stream[:-6]).decode(), "encoding": "zlib"},
                           format="json")
    assert (response.status_code, response.json()["code"]) == (400, "bad_encoding")
    assert "incomplete or truncated" in response.json()["detail"]
    _unchanged(world["query"])


def test_stored_rasters_are_inflated_with_the_same_bound():
    with pytest.raises(codec.RasterTooLarge):
        codec.unpack_labels(zlib.compress(bytes(17)), (4, 4))
    with pytest.raises(codec.RasterTooLarge):
        codec.unpack_float16(zlib.compress(bytes(33)), (4, 4))
    assert codec.unpack_labels(codec.pack_labels(np.eye(4, dtype=np.uint8)), (4, 4)).tolist() == np.eye(4).tolist()
