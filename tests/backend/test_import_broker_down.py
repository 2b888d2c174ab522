"""Issue 15 item 8: an import sent while the task queue (broker) is down.

It once answered an HTML 500 after 19 s, left the job "pending" for ever and deleted the
uploaded files. Now: a JSON 503 within seconds, the job failed with the reason, the files
kept, and ``POST /api/imports/<id>/retry/`` queues it once the broker is back. Both brokers:
Redis on a dead port, and embedded mode's filesystem broker whose folder is unusable.
"""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from backend.imaging.models import ImportJob, Scan
from backend.imaging.services_uploads import uploads_expire_stale
from backend.myolabel.celery import app
from mltasks.geometry import Geometry
from mltasks.io import write_volume
from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db(transaction=True)  # the queue is called when the job's rows commit

GEOMETRY = Geometry(shape=(4, 16, 16), spacing=(2.0, 1.0, 1.0))
QUICK_SECONDS = 10.0  # the 19 s of Celery's default retries are what went wrong


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def _fresh_connections() -> None:
    # The app keeps its broker connections; drop them so the broker settings below apply.
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture(params=["redis", "filesystem"])
def dead_broker(request, settings, tmp_path):
    """Point Celery at a broker that cannot take a message; ``revive()`` brings the queue back (eagerly)."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    if request.param == "redis":
        settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 5.0, "socket_connect_timeout": 3.0}
    else:
        (tmp_path / "not-a-folder").write_text("")
        settings.CELERY_BROKER_URL = "filesystem://"
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path / "not-a-folder" / "in"),
                                                    "data_folder_out": str(tmp_path / "not-a-folder" / "in")}
    _fresh_connections()

    def revive() -> None:
        settings.CELERY_TASK_ALWAYS_EAGER = True
        _fresh_connections()

    yield revive
    _fresh_connections()


@pytest.fixture
def lead_client(client):
    user = UserFactory(username="lead")
    pool = PoolFactory()
    MembershipFactory(user=user, project=ProjectFactory(pools=[pool]), role="lead")
    client.force_login(user)
    client.pool = pool
    return client


def ct_file(tmp_path) -> Path:
    hu = np.random.default_rng(0).integers(-900, 900, GEOMETRY.shape).astype(np.int16)
    return write_volume(hu, GEOMETRY, tmp_path / "ct.nii.gz")


def assert_failed_and_kept(job_id: int, response, elapsed: float) -> ImportJob:
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "queue_unavailable"
    assert body["detail"].startswith("the import could not be queued because the task queue did not answer")
    assert f"retry (POST /api/imports/{job_id}/retry/) once the queue runs again" in body["detail"]
    assert elapsed < QUICK_SECONDS, f"{elapsed:.1f} s"
    job = ImportJob.objects.get(pk=job_id)
    assert job.status == "failed" and job.finished is not None and job.awaiting_retry
    assert [r["error"] for r in job.results] == [body["detail"]]
    staging = Path(job.staging_dir)
    assert (staging / "import.json").is_file()
    assert any(p.name == "ct.nii.gz" for p in staging.rglob("*")), "the uploaded file is gone"
    return job


def test_completing_an_upload_answers_503_keeps_the_files_and_a_retry_imports(lead_client, dead_broker,
                                                                              tmp_path):
    data = ct_file(tmp_path).read_bytes()
    job_id = lead_client.post(reverse("import-upload-start"), {"pool": lead_client.pool.id},
                              content_type="application/json").json()["id"]
    put = lead_client.put(reverse("import-chunk", args=[job_id, "ct.nii.gz"]), data,
                          content_type="application/octet-stream",
                          HTTP_CONTENT_RANGE=f"bytes 0-{len(data) - 1}/{len(data)}")
    assert put.status_code == 200
    began = time.monotonic()
    response = lead_client.post(reverse("import-complete", args=[job_id]), {}, content_type="application/json")
    assert_failed_and_kept(job_id, response, time.monotonic() - began)
    assert not Scan.objects.exists()
    assert lead_client.get(reverse("import-job", args=[job_id])).json()["awaiting_retry"] is True

    dead_broker()  # the queue is back
    retried = lead_client.post(reverse("import-retry", args=[job_id]))
    assert retried.status_code == 202, retried.content
    assert retried.json()["awaiting_retry"] is False
    job = ImportJob.objects.get(pk=job_id)
    assert job.status == "done" and job.results[0]["status"] == "imported"
    assert Scan.objects.get().pk == job.results[0]["scan_id"]
    again = lead_client.post(reverse("import-retry", args=[job_id]))
    assert again.status_code == 409 and again.json()["code"] == "not_retryable"


def test_a_multipart_import_answers_503_and_keeps_the_files(lead_client, dead_broker, tmp_path):
    began = time.monotonic()
    with open(ct_file(tmp_path), "rb") as fh:
        response = lead_client.post(reverse("import-create"), {"pool": lead_client.pool.id, "files": [fh]})
    job = assert_failed_and_kept(ImportJob.objects.get().pk, response, time.monotonic() - began)
    assert job.declared_bytes > 0


def test_the_command_says_the_queue_is_down(dead_broker, tmp_path):
    with pytest.raises(CommandError, match="the import could not be queued .* or import again without --queue"):
        call_command("import_ct", str(ct_file(tmp_path)), "--pool", "p", "--queue", stdout=StringIO())
    job = ImportJob.objects.get()
    assert job.status == "failed" and (Path(job.staging_dir) / "import.json").is_file()


def test_kept_files_are_deleted_after_the_idle_time_and_the_job_says_so(lead_client, dead_broker, tmp_path,
                                                                         settings):
    with open(ct_file(tmp_path), "rb") as fh:
        lead_client.post(reverse("import-create"), {"pool": lead_client.pool.id, "files": [fh]})
    job = ImportJob.objects.get()
    hours = settings.MYOLABEL_UPLOAD_IDLE_HOURS
    assert uploads_expire_stale(now=timezone.now() + timedelta(hours=hours - 1)) == []
    assert uploads_expire_stale(now=timezone.now() + timedelta(hours=hours + 1)) == [job.pk]
    job.refresh_from_db()
    assert not Path(job.staging_dir).exists()
    assert job.results[0]["error"].endswith(f"its uploaded files were deleted {hours:g} h later; upload again")
    gone = lead_client.post(reverse("import-retry", args=[job.pk]))
    assert gone.status_code == 409 and "upload the files again" in gone.json()["detail"]
