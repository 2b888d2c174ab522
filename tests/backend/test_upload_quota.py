"""Issue 15 item 5: announced upload sizes are bounded by a per-user quota and by free disk space.

Three concurrent jobs once each accepted 4 GiB. Now every announced byte (a chunked
file's total, a multipart request's length) counts against the sum over the user's
unfinished uploads (MYOLABEL_UPLOAD_QUOTA_GB) and the free space of the staging and
media folders less a margin; a refused announcement stores nothing.
"""

from __future__ import annotations

import shutil
import threading
from collections import namedtuple
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from backend.imaging.models import ImportJob
from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    use_tmp_storage,
)
from tests.backend.test_import_uploads import put, start

GIB = 2**30
Usage = namedtuple("Usage", "total used free")


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def lead(pool, name: str, *, clients: int = 1) -> Client | list[Client]:
    """A client logged in as lead ``name`` of a project using ``pool`` (several: one per thread)."""
    user = UserFactory(username=name)
    MembershipFactory(user=user, project=pool.projects.first() or ProjectFactory(pools=[pool]), role="lead")
    made = []
    for _ in range(clients):
        client = Client()
        client.force_login(user)
        client.pool = pool
        made.append(client)
    return made[0] if clients == 1 else made


def staged_files(job_id: int) -> list[str]:
    root = Path(ImportJob.objects.get(pk=job_id).staging_dir)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != "options")


@pytest.mark.django_db
def test_the_quota_counts_every_unfinished_upload_of_the_user(settings):
    settings.MYOLABEL_UPLOAD_QUOTA_GB = 100 / GIB  # 100 bytes
    pool = PoolFactory()
    ann, bob = lead(pool, "ann"), lead(pool, "bob")
    first, second = start(ann), start(ann)
    assert put(ann, first, "a.dcm", b"x" * 10, "bytes 0-9/60").status_code == 200
    response = put(ann, second, "b.dcm", b"y" * 10, "bytes 0-9/50")
    assert response.status_code == 413
    assert response.json() == {"code": "upload_quota", "detail": (
        "b.dcm: your unfinished uploads would hold 110 bytes, more than your quota of 100 bytes "
        "(MYOLABEL_UPLOAD_QUOTA_GB); wait until your imports in progress finish, or delete uploads you "
        "abandoned (DELETE /api/imports/<id>/), then upload again")}
    assert staged_files(second) == [] and ImportJob.objects.get(pk=second).declared_bytes == 0
    # Another user has a quota of their own; the same file again is no new announcement.
    assert put(bob, start(bob), "b.dcm", b"y" * 10, "bytes 0-9/50").status_code == 200
    assert put(ann, first, "a.dcm", b"x" * 10, "bytes 10-19/60").status_code == 200
    changed = put(ann, first, "a.dcm", b"x" * 10, "bytes 20-29/70")
    assert changed.status_code == 400 and "a.dcm: total 70 differs from the 60 declared before" in changed.json()["detail"]
    assert ImportJob.objects.get(pk=first).declared_bytes == 60
    # Deleting the open upload frees its share of the quota.
    assert ann.delete(reverse("import-job", args=[first])).status_code == 204
    assert put(ann, second, "b.dcm", b"y" * 10, "bytes 0-9/50").status_code == 200
    assert ImportJob.objects.get(pk=second).declared_bytes == 50


@pytest.mark.django_db
def test_a_multipart_upload_over_the_quota_is_refused_and_nothing_kept(settings, tmp_path):
    settings.MYOLABEL_UPLOAD_QUOTA_GB = 2048 / GIB
    client = lead(PoolFactory(), "ann")
    assert put(client, start(client), "a.dcm", b"x", "bytes 0-0/1500").status_code == 200
    response = client.post(reverse("import-create"), {"pool": client.pool.id, "files": [b"x" * 800]})
    assert response.status_code == 413 and response.json()["code"] == "upload_quota"
    assert response.json()["detail"].startswith("the upload: your unfinished uploads would hold ")
    assert ImportJob.objects.count() == 1
    assert [p.name for p in Path(settings.MYOLABEL_STAGING_DIR).iterdir()] == [
        Path(ImportJob.objects.get().staging_dir).name]


@pytest.mark.django_db
def test_too_little_free_disk_space_is_a_507_and_nothing_kept(settings, monkeypatch):
    settings.MYOLABEL_DISK_MARGIN_GB = 1.0
    client = lead(PoolFactory(), "ann")
    job_id = start(client)
    assert put(client, job_id, "a.dcm", b"x" * 10, "bytes 0-9/" + str(GIB // 2)).status_code == 200
    free = GIB + GIB // 2 + 100  # the margin, the first file, and 100 bytes
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(100 * GIB, 99 * GIB, free))
    response = put(client, job_id, "b.dcm", b"y" * 10, "bytes 0-9/101")
    assert response.status_code == 507
    assert response.json() == {"code": "insufficient_storage", "detail": (
        "b.dcm: the server's staging folder has 1.50 GiB free, too little for this upload and the imports in "
        "progress plus its reserve of 1 GiB (MYOLABEL_DISK_MARGIN_GB); try again after the imports in "
        "progress finish, or ask an administrator to free disk space")}
    assert staged_files(job_id) == ["files/a.dcm", "totals/a.dcm"]
    assert put(client, job_id, "b.dcm", b"y" * 10, "bytes 0-9/100").status_code == 200  # exactly fits
    multipart = client.post(reverse("import-create"), {"pool": client.pool.id, "files": [b"z" * 10]})
    assert multipart.status_code == 507 and multipart.json()["code"] == "insufficient_storage"
    assert ImportJob.objects.count() == 1


@pytest.mark.django_db
def test_a_user_who_may_import_nowhere_learns_nothing_of_the_free_space(monkeypatch):
    pool = PoolFactory()
    annotator = UserFactory(username="ann")
    MembershipFactory(user=annotator, project=ProjectFactory(pools=[pool]), role="annotator")
    client = Client()
    client.force_login(annotator)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(100 * GIB, 100 * GIB, 0))  # a full disk
    response = client.post(reverse("import-create"), {"pool": pool.id, "files": [b"z" * 10]})
    assert response.status_code == 403
    assert response.json() == {"code": "permission_denied",
                               "detail": "Importing needs the lead role or higher in a project using the pool."}
    assert ImportJob.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_announcements_never_pass_the_quota_together(settings):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite's in-memory test database locks tables instead of waiting; "
                    "test_concurrent_announcements_in_embedded_mode runs this on a database file")
    settings.MYOLABEL_UPLOAD_QUOTA_GB = 100 / GIB
    clients = lead(PoolFactory(), "ann", clients=6)
    jobs = [start(c) for c in clients]
    barrier, answers = threading.Barrier(len(clients)), [None] * len(clients)

    def announce(i: int) -> None:
        barrier.wait()
        try:
            answers[i] = put(clients[i], jobs[i], "a.dcm", b"x", "bytes 0-0/40").status_code
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=announce, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200, 200, 413, 413, 413, 413]
    assert sum(ImportJob.objects.values_list("declared_bytes", flat=True)) == 80


_SETUP = """
from django.contrib.auth import get_user_model
from backend.imaging.models import ImportJob, Pool
from backend.imaging.services import staging_dir_new
user = get_user_model().objects.create_user("ann")
pool = Pool.objects.create(name="p")
ids = [ImportJob.objects.create(pool=pool, created_by=user, staging_dir=str(staging_dir_new())).pk for _ in range(6)]
print(" ".join(map(str, ids)))
"""

_DECLARE = """
import sys, time
from pathlib import Path
import django
django.setup()
from backend.imaging.models import ImportJob
from backend.imaging.services_uploads import UploadQuotaExceeded, upload_declare_file
job, gate = ImportJob.objects.get(pk=int(sys.argv[1])), Path(sys.argv[2])
(gate / f"ready-{job.pk}").touch()
while not (gate / "go").exists():
    time.sleep(0.005)
try:
    upload_declare_file(job=job, name="a.dcm", total=40)
    print("accepted")
except UploadQuotaExceeded:
    print("refused")
"""


def test_concurrent_announcements_in_embedded_mode(tmp_path):
    """Six processes announce 40 bytes at once against a 100-byte quota on embedded mode's SQLite file."""
    import os
    import subprocess
    import sys
    import time

    if connection.vendor != "sqlite":
        pytest.skip("embedded mode's SQLite file; PostgreSQL runs test_concurrent_announcements_never_pass_...")
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"MYOLABEL_DATA_DIR": str(tmp_path / "data"), "MYOLABEL_UPLOAD_QUOTA_GB": f"{100 / GIB:.20f}",
            "DJANGO_SETTINGS_MODULE": "backend.myolabel.settings", "PYTHONPATH": str(repo)}
    manage = [sys.executable, str(repo / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, capture_output=True)
    made = subprocess.run([*manage, "shell", "-c", _SETUP], env=env, check=True, capture_output=True, text=True)
    jobs = made.stdout.strip().splitlines()[-1].split()  # the shell announces its imports first
    gate = tmp_path / "gate"
    gate.mkdir()
    runs = [subprocess.Popen([sys.executable, "-c", _DECLARE, job, str(gate)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for job in jobs]
    deadline = time.monotonic() + 120
    while len(list(gate.glob("ready-*"))) < len(jobs) and time.monotonic() < deadline:
        assert all(run.poll() is None for run in runs), [run.communicate() for run in runs if run.poll() is not None]
        time.sleep(0.05)
    (gate / "go").touch()
    answers = [run.communicate(timeout=120) for run in runs]
    assert sorted(out.strip() for out, _ in answers) == ["accepted"] * 2 + ["refused"] * 4, answers
