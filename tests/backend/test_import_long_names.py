"""Issue 15 item 11: DICOM files named by long UIDs (as TCIA and PACS exports name them) import.

The stored original gets a name the server makes up; the name the file came with is kept as data.
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse

from backend.imaging.models import ImportJob, Scan, ScanFile
from mltasks.geometry import Geometry
from mltasks.io import write_dicom_series
from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db

GEOMETRY = Geometry(shape=(4, 16, 16), spacing=(2.0, 1.0, 1.0))
NAME_LENGTH = 120
TCIA_ROOT = "1.3.6.1.4.1.14519.5.2.1.7085.2036."


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def uid_named_series(folder: Path, seed: int) -> list[Path]:
    """A DICOM series whose files are named like TCIA's, ``CT<uid>.dcm``, 120 characters each."""
    hu = np.random.default_rng(seed).integers(-900, 900, GEOMETRY.shape).astype(np.int16)
    written = write_dicom_series(hu, GEOMETRY, folder, series_uid=f"{TCIA_ROOT}{seed}")
    renamed = []
    for k, path in enumerate(written):
        stem = f"CT{TCIA_ROOT}{seed}.{k}."
        name = stem + "7" * (NAME_LENGTH - len(stem) - len(".dcm")) + ".dcm"
        assert len(name) == NAME_LENGTH
        renamed.append(path.rename(folder / name))
    return renamed


def assert_imported_with_original_names(job: ImportJob, files: list[Path], shown_prefix: str, media: Path) -> None:
    assert job.status == "done", job.results
    assert [r["status"] for r in job.results] == ["imported"]
    scan = Scan.objects.get()
    rows = list(ScanFile.objects.filter(scan=scan).order_by("original_name"))
    assert [r.original_name for r in rows] == sorted(f"{shown_prefix}{p.name}" for p in files)
    max_length = ScanFile._meta.get_field("file").max_length
    for row, path in zip(rows, sorted(files), strict=True):
        assert len(row.file.name) <= max_length
        assert (media / row.file.name).read_bytes() == path.read_bytes()  # the original, byte for byte
    assert row.size == path.stat().st_size


def test_a_uid_named_series_imports_by_upload(client, settings, tmp_path, django_capture_on_commit_callbacks):
    user = UserFactory()
    pool = PoolFactory()
    MembershipFactory(user=user, project=ProjectFactory(pools=[pool]), role="lead")
    client.force_login(user)
    files = uid_named_series(tmp_path / "tcia", seed=1)
    handles = [open(p, "rb") for p in files]  # noqa: SIM115 - closed below
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(reverse("import-create"), {"pool": pool.id, "files": handles})
    finally:
        for fh in handles:
            fh.close()
    assert response.status_code == 202, response.content
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert_imported_with_original_names(job, files, f"{len(files)} files/", settings.MEDIA_ROOT)
    shown = client.get(reverse("import-job", args=[job.pk])).json()
    assert "internal error" not in str(shown["results"])


def test_a_uid_named_series_imports_by_the_command(settings, tmp_path):
    files = uid_named_series(tmp_path / "tcia", seed=2)
    out = StringIO()
    call_command("import_ct", str(tmp_path / "tcia"), "--pool", "p", stdout=out)
    job = ImportJob.objects.get()
    assert_imported_with_original_names(job, files, "tcia/", settings.MEDIA_ROOT)
    assert f"imported tcia as scan {Scan.objects.get().pk}" in out.getvalue()


def test_an_upload_name_too_long_for_the_disk_is_a_clear_400(client, tmp_path):
    user = UserFactory()
    pool = PoolFactory()
    MembershipFactory(user=user, project=ProjectFactory(pools=[pool]), role="lead")
    client.force_login(user)
    job_id = client.post(reverse("import-upload-start"), {"pool": pool.id},
                         content_type="application/json").json()["id"]
    name = "x" * 300 + ".dcm"  # no file system stores a name this long
    response = client.put(reverse("import-chunk", args=[job_id, name]), b"0",
                          content_type="application/octet-stream", HTTP_CONTENT_RANGE="bytes 0-0/1")
    assert response.status_code == 400
    assert "longer than the 255 bytes" in str(response.json())
    assert not list((Path(ImportJob.objects.get().staging_dir) / "files").iterdir())
