"""Issue 15, item 9: deleting a pool or a project deletes its stored files once the deletion
commits (never before, never on rollback, never a file another row names), and
``manage.py orphan_files`` lists and removes files no row refers to."""

from __future__ import annotations

import os
import time
from io import StringIO
from pathlib import Path

import boto3
import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages
from django.core.management import CommandError, call_command
from django.db import transaction
from django.urls import reverse
from moto import mock_aws

from backend.acquisition.models import ModelVersion, Segmentation
from backend.imaging import services_pools
from backend.imaging.models import ImportJob, Pool, Scan, ScanFile
from backend.imaging.services import staging_dir_new
from backend.projects.models import Membership, Project
from tests.backend.factories import UserFactory, project_with_data, stored_files, use_tmp_storage

pytestmark = pytest.mark.django_db
Role = Membership.Role


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def names_of_pool(pool: Pool) -> set[str]:
    scans = Scan.objects.filter(pool=pool)
    names = {s.volume.name for s in scans}
    names |= set(ScanFile.objects.filter(scan__in=scans).values_list("file", flat=True))
    for scan in scans:
        names |= {ref.labels.name for ref in scan.reference_labels.all()}
    for seg in Segmentation.objects.filter(scan__in=scans):
        names |= {n for n in (seg.labels.name, seg.uncertainty.name) if n}
    return names


def staged_job(pool: Pool) -> ImportJob:
    staging = staging_dir_new()
    (staging / "files").mkdir()
    (staging / "files" / "ct.dcm").write_bytes(b"DICM uploaded, not yet imported")
    return ImportJob.objects.create(pool=pool, staging_dir=str(staging))


def test_deleting_a_pool_through_the_api_deletes_all_its_files_after_commit(
        client, settings, django_capture_on_commit_callbacks):
    p1, p2 = project_with_data("P1"), project_with_data("P2")
    job = staged_job(p1["pool"])
    doomed, all_before = names_of_pool(p1["pool"]), set(stored_files(settings.MEDIA_ROOT))
    assert len(doomed) == 2 + 2 + 2 + 1 and doomed <= all_before  # volumes, originals, references, uncertainty
    client.force_login(p1["users"][Role.ADMIN])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.delete(reverse("pool-detail", args=[p1["pool"].pk]))
    assert response.status_code == 204, response.content
    assert set(stored_files(settings.MEDIA_ROOT)) == all_before, "files went before the commit"
    for callback in callbacks:  # what the commit runs
        callback()
    assert set(stored_files(settings.MEDIA_ROOT)) == all_before - doomed
    assert not Path(job.staging_dir).exists()
    assert not Pool.objects.filter(pk=p1["pool"].pk).exists()
    # The project stays with its model (its checkpoint too); P2 keeps everything.
    checkpoint = ModelVersion.objects.get(project=p1["project"]).checkpoint.name
    assert checkpoint in stored_files(settings.MEDIA_ROOT)
    assert names_of_pool(p2["pool"]) <= set(stored_files(settings.MEDIA_ROOT))


def test_a_pool_delete_that_rolls_back_keeps_rows_and_files(settings, django_capture_on_commit_callbacks):
    p1 = project_with_data("P1")
    pool_id, before = p1["pool"].pk, stored_files(settings.MEDIA_ROOT)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        with transaction.atomic():
            services_pools.pool_delete(pool=p1["pool"], user=p1["users"][Role.ADMIN])
            raise RuntimeError("something after the delete failed")
    assert Scan.objects.filter(pool_id=pool_id).count() == 2
    assert stored_files(settings.MEDIA_ROOT) == before


def test_a_file_another_row_still_names_is_kept(settings, django_capture_on_commit_callbacks):
    p1, p2 = project_with_data("P1"), project_with_data("P2")
    shared = p1["scans"][0].volume.name
    Scan.objects.filter(pk=p2["scans"][0].pk).update(volume=shared)  # e.g. a copy made by hand
    with django_capture_on_commit_callbacks(execute=True):
        services_pools.pool_delete(pool=p1["pool"], user=p1["users"][Role.ADMIN])
    assert shared in stored_files(settings.MEDIA_ROOT)


def test_deleting_a_project_deletes_its_models_and_segmentations_but_not_its_pool(
        client, settings, django_capture_on_commit_callbacks):
    p1 = project_with_data("P1")
    version = ModelVersion.objects.get(project=p1["project"])
    segmentation = Segmentation.objects.get(project=p1["project"])
    doomed = {version.checkpoint.name, segmentation.uncertainty.name}
    kept = {s.volume.name for s in p1["scans"]}
    client.force_login(p1["users"][Role.ADMIN])
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(reverse("project-detail", args=[p1["project"].pk])).status_code == 204
    files = set(stored_files(settings.MEDIA_ROOT))
    assert not doomed & files and kept <= files
    assert not Project.objects.filter(pk=p1["project"].pk).exists() and Pool.objects.filter(pk=p1["pool"].pk).exists()


def _age(name: str, hours: float) -> None:
    path = default_storage.path(name)
    stamp = time.time() - hours * 3600
    os.utime(path, (stamp, stamp))


def test_orphan_files_lists_then_deletes_orphans_and_leaves_referenced_files(settings):
    p1 = project_with_data("P1")
    referenced = set(stored_files(settings.MEDIA_ROOT))
    old = default_storage.save("scans/2020/01/left-behind.npy", ContentFile(b"patient data"))
    young = default_storage.save("originals/2020/01/being-imported.dcm", ContentFile(b"an import in progress"))
    _age(old, 48)
    stray_staging = staging_dir_new()
    os.utime(stray_staging, (time.time() - 48 * 3600,) * 2)
    live_job = staged_job(p1["pool"])
    os.utime(live_job.staging_dir, (time.time() - 48 * 3600,) * 2)

    listed = StringIO()
    call_command("orphan_files", stdout=listed)
    assert listed.getvalue().splitlines() == [
        f"file {old}", f"staging {stray_staging}",
        "1 orphaned file(s), 1 orphaned staging folder(s); run with --delete to remove them"]
    assert set(stored_files(settings.MEDIA_ROOT)) == referenced | {old, young}, "listing must not delete"

    deleted = StringIO()
    call_command("orphan_files", "--delete", "--min-age", "0", stdout=deleted)
    assert deleted.getvalue().splitlines()[-1] == "2 orphaned file(s) and 1 staging folder(s) deleted"
    assert set(stored_files(settings.MEDIA_ROOT)) == referenced
    assert not stray_staging.exists() and Path(live_job.staging_dir).exists()


def test_orphan_files_refuses_a_negative_age():
    with pytest.raises(CommandError, match="--min-age must not be negative, not -1.0"):
        call_command("orphan_files", "--min-age", "-1")


def test_only_a_superuser_or_admin_of_every_project_reaches_the_file_deletion(settings):
    """The service refuses before it deletes anything: no row and no file goes."""
    p1 = project_with_data("P1")
    before = stored_files(settings.MEDIA_ROOT)
    with pytest.raises(ValidationError, match="not an admin"):
        services_pools.pool_delete(pool=p1["pool"], user=UserFactory())
    assert stored_files(settings.MEDIA_ROOT) == before and Scan.objects.count() == 2


@pytest.fixture
def s3(settings, monkeypatch):
    """Media in an S3 bucket (moto's in-process S3), as MYOLABEL_S3_BUCKET configures it."""
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="myolabel-test")
        settings.STORAGES = {**settings.STORAGES, "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": "myolabel-test", "region_name": "us-east-1", "location": "media",
                        "file_overwrite": False}}}
        assert type(storages["default"]).__name__ == "S3Storage"
        yield


def test_a_pool_on_s3_loses_its_files_and_their_cached_copies(
        client, settings, s3, django_capture_on_commit_callbacks):
    from backend.imaging.volumes import local_path

    p1, p2 = project_with_data("P1"), project_with_data("P2")
    doomed, kept = names_of_pool(p1["pool"]), names_of_pool(p2["pool"])
    cached = local_path(p1["scans"][0].volume.name)  # as the slice endpoints leave it
    assert cached.is_file() and all(default_storage.exists(n) for n in doomed | kept)
    client.force_login(p1["users"][Role.ADMIN])
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(reverse("pool-detail", args=[p1["pool"].pk])).status_code == 204
    assert not any(default_storage.exists(n) for n in doomed) and not cached.exists()
    assert all(default_storage.exists(n) for n in kept)


def test_orphan_files_work_on_s3(s3):
    project_with_data("P1")
    orphan = default_storage.save("scans/left-behind.npy", ContentFile(b"patient data"))
    young = StringIO()
    call_command("orphan_files", "--delete", stdout=young)  # just written: may belong to an import under way
    assert young.getvalue().splitlines() == ["0 orphaned file(s) and 0 staging folder(s) deleted"]
    out = StringIO()
    call_command("orphan_files", "--delete", "--min-age", "0", stdout=out)
    assert out.getvalue().splitlines() == [f"file {orphan}", "1 orphaned file(s) and 0 staging folder(s) deleted"]
    assert not default_storage.exists(orphan) and Scan.objects.filter(volume__startswith="scans/").count() == 2
    assert all(default_storage.exists(s.volume.name) for s in Scan.objects.all())


def test_orphan_files_on_an_empty_media_folder(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "never-written"
    out = StringIO()
    call_command("orphan_files", stdout=out)
    assert out.getvalue().splitlines() == [
        "0 orphaned file(s), 0 orphaned staging folder(s); run with --delete to remove them"]
