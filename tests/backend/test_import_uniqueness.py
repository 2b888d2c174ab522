"""Issue 15 item 10: a series, and the same pixel data, are imported once: enforced by the database.

The importer's own check runs before the scan row is written; two imports that pass it at
the same moment (two admins, two pools) race to the insert, and the database stops the loser,
which reports the same message as an import that came later.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from backend.imaging import services, services_scans
from backend.imaging.models import ImportJob, Scan
from backend.imaging.services import ImportInput, import_job_create, import_job_run
from mltasks.geometry import Geometry
from mltasks.io import write_dicom_series, write_volume
from tests.backend.factories import PoolFactory, stored_files, use_tmp_storage

GEOMETRY = Geometry(shape=(4, 12, 10), spacing=(2.0, 1.5, 1.5))


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def ct(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1000, size=GEOMETRY.shape).astype(np.int16)


def run(pool, path: Path) -> ImportJob:
    job = import_job_create(pool=pool, user=None, inputs=[ImportInput(path, path.name)], schedule=False)
    return import_job_run(job=ImportJob.objects.get(pk=job.pk))


def racing(monkeypatch) -> None:
    """Let the importer's checks see nothing, as when a concurrent import commits just after them."""
    for module in (services, services_scans):
        monkeypatch.setattr(module, "check_not_duplicate", lambda read, user: None)


@pytest.mark.django_db
def test_a_racing_import_of_the_same_series_gets_the_usual_message_and_stores_nothing(settings, tmp_path,
                                                                                       monkeypatch):
    write_dicom_series(ct(1), GEOMETRY, tmp_path / "first", series_uid="1.2.840.77")
    write_dicom_series(ct(2), GEOMETRY, tmp_path / "again", series_uid="1.2.840.77")
    assert run(PoolFactory(name="pool"), tmp_path / "first").status == "done"
    scan = Scan.objects.get()
    stored = stored_files(settings.MEDIA_ROOT)
    racing(monkeypatch)
    job = run(PoolFactory(name="other"), tmp_path / "again")
    assert job.status == "failed"
    assert job.results == [{"name": "again", "status": "failed", "error": (
        f'again: series 1.2.840.77 is already imported as scan "first" (id {scan.pk}) in pool "pool"; '
        "it was not imported again")}]
    assert list(Scan.objects.values_list("pk", flat=True)) == [scan.pk]
    assert stored_files(settings.MEDIA_ROOT) == stored  # the loser's volume and originals are deleted


@pytest.mark.django_db
def test_a_racing_import_of_the_same_pixels_gets_the_usual_message(settings, tmp_path, monkeypatch):
    write_volume(ct(3), GEOMETRY, tmp_path / "a.nii.gz")
    write_volume(ct(3), GEOMETRY, tmp_path / "b.mha")
    assert run(PoolFactory(name="pool"), tmp_path / "a.nii.gz").status == "done"
    scan = Scan.objects.get()
    racing(monkeypatch)
    job = run(PoolFactory(name="other"), tmp_path / "b.mha")
    assert job.results[0]["error"] == (f'b.mha: the same image data is already imported as scan "a" (id {scan.pk}) '
                                       'in pool "pool"; it was not imported again')
    assert Scan.objects.count() == 1


@pytest.mark.django_db
def test_the_database_refuses_a_second_row_for_a_series_or_for_pixel_data():
    pool = PoolFactory()
    fields = {"pool": pool, "original_geometry": {}, "geometry": {}, "source_format": "dicom", "volume": "v.npy"}
    Scan.objects.create(name="a", series_uid="1.2.3", content_hash="h1", **fields)
    for clash in ({"series_uid": "1.2.3", "content_hash": "h2"}, {"series_uid": "", "content_hash": "h1"}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Scan.objects.create(name="b", **clash, **fields)
    # Images without a series UID (NIfTI, MHA, NRRD) differ by their pixels alone.
    Scan.objects.create(name="c", series_uid="", content_hash="h3", **fields)
    Scan.objects.create(name="d", series_uid="", content_hash="h4", **fields)
    # Procedural phantoms are generated, not imported: the demo and a simulation may share one.
    for name in ("phantom in the demo", "phantom in a simulation"):
        Scan.objects.create(name=name, series_uid="", content_hash="h1", **fields | {"source_format": "phantom"})
    assert Scan.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_scans_imported_twice_before_and_marks_the_later_copies():
    executor = MigrationExecutor(connection)
    before, after = [("imaging", "0002_initial")], executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    old = MigrationExecutor(connection).loader.project_state(before).apps
    Pool, Scan_ = old.get_model("imaging", "Pool"), old.get_model("imaging", "Scan")
    pool = Pool.objects.create(name="p")
    fields = {"pool": pool, "original_geometry": {}, "geometry": {}, "source_format": "dicom", "volume": "v.npy"}
    first = Scan_.objects.create(name="first", series_uid="1.2.9", content_hash="x", **fields)
    twin = Scan_.objects.create(name="same series", series_uid="1.2.9", content_hash="y", **fields)
    copy = Scan_.objects.create(name="same pixels", series_uid="", content_hash="x", **fields)
    other = Scan_.objects.create(name="other", series_uid="1.2.10", content_hash="z", **fields)
    phantoms = [Scan_.objects.create(name=f"phantom {k}", content_hash="p", **fields | {"source_format": "phantom"})
                for k in range(2)]
    MigrationExecutor(connection).migrate(after)
    marked = dict(Scan.objects.values_list("pk", "legacy_duplicate"))
    assert marked == {first.pk: False, twin.pk: True, copy.pk: True, other.pk: False,
                      phantoms[0].pk: False, phantoms[1].pk: False}
    assert f"duplicate of scan {first.pk} (same series)" in Scan.objects.get(pk=twin.pk).import_log
    assert f"duplicate of scan {first.pk} (same pixel data)" in Scan.objects.get(pk=copy.pk).import_log
    with pytest.raises(IntegrityError), transaction.atomic():
        Scan.objects.create(name="new", series_uid="1.2.9", content_hash="w", pool_id=pool.pk,
                            original_geometry={}, geometry={}, source_format="dicom", volume="v.npy")
