"""Abandoned chunked uploads are failed with a message and their staged bytes deleted."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backend.imaging.models import ImportJob
from tests.backend.test_import_uploads import (  # noqa: F401 - fixture
    _storage,  # noqa: F401 - autouse fixture
    lead_client,
    put,
    start,
)

pytestmark = pytest.mark.django_db


def _age(job_id: int, hours: float) -> Path:
    """Pretend the job's last chunk arrived ``hours`` ago; return its staging folder."""
    job = ImportJob.objects.get(pk=job_id)
    ImportJob.objects.filter(pk=job_id).update(created=job.created - timedelta(hours=hours))
    staging = Path(job.staging_dir)
    past = time.time() - hours * 3600
    for path in [staging, *staging.rglob("*")]:
        os.utime(path, (past, past))
    return staging


def test_a_new_upload_fails_and_deletes_one_idle_for_longer_than_the_limit(lead_client, settings):  # noqa: F811
    settings.MYOLABEL_UPLOAD_IDLE_HOURS = 24
    old = start(lead_client)
    assert put(lead_client, old, "a.dcm", b"0123456789", "bytes 0-9/20").status_code == 200
    recent = start(lead_client)
    assert put(lead_client, recent, "b.dcm", b"01234", "bytes 0-4/10").status_code == 200
    old_staging = _age(old, 25)
    _age(recent, 23)

    start(lead_client)  # sweeps

    job = ImportJob.objects.get(pk=old)
    assert job.status == "failed" and job.finished is not None
    assert job.results[0]["error"].startswith("upload abandoned: no chunk arrived for 24 h")
    assert not old_staging.exists()
    assert ImportJob.objects.get(pk=recent).status == "pending"
    assert Path(ImportJob.objects.get(pk=recent).staging_dir).is_dir()
    # The failed upload takes no more chunks.
    response = put(lead_client, old, "a.dcm", b"0123456789", "bytes 10-19/20")
    assert response.status_code in (404, 409)


def test_the_command_expires_with_its_own_limit_and_refuses_a_negative_one(lead_client):  # noqa: F811
    job_id = start(lead_client)
    _age(job_id, 2)
    out = StringIO()
    call_command("expire_uploads", "--hours", "3", stdout=out)
    assert out.getvalue().startswith("0 abandoned upload(s)")
    call_command("expire_uploads", "--hours", "1", stdout=out)
    assert f"1 abandoned upload(s) failed and deleted: jobs {job_id}" in out.getvalue()
    assert ImportJob.objects.get(pk=job_id).status == "failed"
    with pytest.raises(CommandError, match="must not be negative"):
        call_command("expire_uploads", "--hours", "-1")
