"""The chunked-upload API: ranges, resuming, limits, who may upload, and how files group into inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse

from backend.imaging.apis_imports import upload_inputs
from backend.imaging.models import ImportJob, Scan
from mltasks.geometry import Geometry
from mltasks.io import write_dicom_series, write_volume
from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db

GEOMETRY = Geometry(shape=(4, 16, 16), spacing=(2.0, 1.0, 1.0))


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


@pytest.fixture
def lead_client(client):
    user = UserFactory(username="lead")
    pool = PoolFactory()
    MembershipFactory(user=user, project=ProjectFactory(pools=[pool]), role="lead")
    client.force_login(user)
    client.pool = pool
    return client


def start(client, **extra) -> int:
    response = client.post(reverse("import-upload-start"), {"pool": client.pool.id, **extra},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def put(client, job_id: int, name: str, body: bytes, header: str):
    return client.put(reverse("import-chunk", args=[job_id, name]), body,
                      content_type="application/octet-stream", HTTP_CONTENT_RANGE=header)


def test_a_chunk_must_start_where_the_file_ends_and_get_says_where(lead_client):
    job_id = start(lead_client)
    assert put(lead_client, job_id, "a.dcm", b"0123456789", "bytes 0-9/20").status_code == 200
    response = put(lead_client, job_id, "a.dcm", b"xyz", "bytes 15-17/20")
    assert response.status_code == 409
    assert "expected the chunk starting at byte 10, got 15" in response.json()["detail"]
    resume = lead_client.get(reverse("import-chunk", args=[job_id, "a.dcm"])).json()
    assert resume == {"name": "a.dcm", "received": 10, "total": 20}


def test_a_body_shorter_than_its_range_is_rolled_back(lead_client):
    job_id = start(lead_client)
    response = put(lead_client, job_id, "a.dcm", b"01234", "bytes 0-9/20")
    assert response.status_code == 400
    assert "the body holds 5 bytes but the range announces 10" in json.dumps(response.json())
    assert lead_client.get(reverse("import-chunk", args=[job_id, "a.dcm"])).json()["received"] == 0


@pytest.mark.parametrize("header", ["", "bytes 5-2/10", "bytes 0-10/10", "items 0-1/2"])
def test_a_bad_content_range_is_a_400(lead_client, header):
    assert put(lead_client, start(lead_client), "a.dcm", b"01", header).status_code == 400


def test_uploads_beyond_the_configured_limits_get_413(lead_client, settings):
    settings.MYOLABEL_MAX_UPLOAD_BYTES = 100
    settings.MYOLABEL_MAX_CHUNK_BYTES = 30
    job_id = start(lead_client)
    assert put(lead_client, job_id, "a.dcm", b"x" * 31, "bytes 0-30/60").status_code == 413
    assert put(lead_client, job_id, "a.dcm", b"x" * 30, "bytes 0-29/60").status_code == 200
    response = put(lead_client, job_id, "b.dcm", b"x" * 10, "bytes 0-9/41")
    assert response.status_code == 413 and "MYOLABEL_MAX_UPLOAD_BYTES" in response.json()["detail"]
    big = lead_client.post(reverse("import-create"), {"pool": lead_client.pool.id, "files": [b"x" * 200]})
    assert big.status_code == 413


@pytest.mark.parametrize("name", ["../escape.dcm", "a/../../b.dcm", "..%5Cescape.dcm"])
def test_upload_names_that_climb_out_are_refused(lead_client, name):
    response = lead_client.put(f"/api/imports/{start(lead_client)}/files/{name}", b"x",
                               content_type="application/octet-stream", HTTP_CONTENT_RANGE="bytes 0-0/1")
    assert response.status_code in (400, 404)
    assert not list(Path(ImportJob.objects.get().staging_dir).parent.rglob("escape.dcm"))


def test_complete_waits_for_every_byte_and_then_closes_the_upload(lead_client):
    job_id = start(lead_client)
    put(lead_client, job_id, "a.dcm", b"0123", "bytes 0-3/8")
    response = lead_client.post(reverse("import-complete", args=[job_id]), {}, content_type="application/json")
    assert response.status_code == 409 and "a.dcm (4 of 8 bytes)" in response.json()["detail"]
    put(lead_client, job_id, "a.dcm", b"4567", "bytes 4-7/8")
    response = lead_client.post(reverse("import-complete", args=[job_id]), {}, content_type="application/json")
    assert response.status_code == 202 and response.json()["id"] == job_id  # the same job, now queued
    assert response.json()["results"] == [{"name": "a.dcm", "status": "pending"}]
    assert put(lead_client, job_id, "b.dcm", b"0", "bytes 0-0/1").status_code == 409


def test_a_chunked_upload_imports_a_mhd_with_its_raw(lead_client, tmp_path, django_capture_on_commit_callbacks):
    hu = np.arange(np.prod(GEOMETRY.shape), dtype=np.int16).reshape(GEOMETRY.shape)
    write_volume(hu, GEOMETRY, tmp_path / "ct.mhd", compress=False)
    job_id = start(lead_client)
    for name in ("ct.mhd", "ct.raw"):
        data = (tmp_path / name).read_bytes()
        assert put(lead_client, job_id, name, data, f"bytes 0-{len(data) - 1}/{len(data)}").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        lead_client.post(reverse("import-complete", args=[job_id]), {}, content_type="application/json")
    job = ImportJob.objects.get(pk=job_id)
    assert job.status == "done" and job.results[0]["name"] == "ct.mhd"
    assert Scan.objects.get().source_format == "mha"


def test_deleting_an_open_upload_removes_its_files(lead_client):
    job_id = start(lead_client)
    put(lead_client, job_id, "a.dcm", b"0123", "bytes 0-3/8")
    staging = Path(ImportJob.objects.get(pk=job_id).staging_dir)
    assert lead_client.delete(reverse("import-job", args=[job_id])).status_code == 204
    assert not staging.exists() and not ImportJob.objects.exists()


def test_annotators_get_403_and_strangers_404(client, lead_client):
    job_id = start(lead_client)
    annotator = UserFactory(username="annotator")
    MembershipFactory(user=annotator, project=lead_client.pool.projects.get(), role="annotator")
    stranger = UserFactory(username="stranger")
    MembershipFactory(user=stranger, role="lead")  # lead of another project
    from django.test import Client

    as_annotator, as_stranger = Client(), Client()
    as_annotator.force_login(annotator)
    as_stranger.force_login(stranger)
    body = {"pool": lead_client.pool.id}
    assert as_annotator.post(reverse("import-upload-start"), body, content_type="application/json").status_code == 403
    assert as_stranger.post(reverse("import-upload-start"), body, content_type="application/json").status_code == 404
    assert as_stranger.get(reverse("import-job", args=[job_id])).status_code == 404
    assert put(as_stranger, job_id, "a.dcm", b"0", "bytes 0-0/1").status_code == 404
    assert client.logout() is None and put(client, job_id, "a.dcm", b"0", "bytes 0-0/1").status_code in (401, 403)


def test_uploaded_files_group_into_inputs(tmp_path):
    files = tmp_path / "files"
    write_dicom_series(np.zeros(GEOMETRY.shape, np.int16), GEOMETRY, files / "series1")
    write_volume(np.zeros(GEOMETRY.shape, np.int16), GEOMETRY, files / "ct.mhd", compress=False)
    write_volume(np.zeros(GEOMETRY.shape, np.uint8), GEOMETRY, files / "labels.nii.gz")
    (files / "study.zip").write_bytes(b"PK")
    inputs, labels = upload_inputs(files, labels="labels.nii.gz")
    assert [i.name for i in inputs] == ["ct.mhd", "study.zip", "series1"]
    assert labels.name == "labels.nii.gz"
    assert len(list(inputs[2].path.glob("*.dcm"))) == 4  # the loose DICOM files moved to their own folder


def test_a_large_chunked_upload_never_sits_in_memory(lead_client):
    import gc
    import tracemalloc

    job_id = start(lead_client)
    chunk, n_chunks = 2 * 2**20, 12  # 24 MiB in 2 MiB chunks
    total = chunk * n_chunks
    tracemalloc.start()
    try:
        for k in range(n_chunks):
            body = bytes([k]) * chunk
            response = put(lead_client, job_id, "big.zip", body, f"bytes {k * chunk}-{(k + 1) * chunk - 1}/{total}")
            assert response.status_code == 200
            del body, response
            gc.collect()  # the test client's request/response cycles would hold old chunks
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    staged = Path(ImportJob.objects.get(pk=job_id).staging_dir) / "files" / "big.zip"
    assert staged.stat().st_size == total
    # The test client holds one chunk (plus a copy); the server adds 1 MiB blocks, never the file.
    assert peak < 4 * chunk, f"peak {peak / 2**20:.0f} MiB"
