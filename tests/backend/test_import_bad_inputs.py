"""Every kind of bad input fails with a message naming the file, and leaves no row and no file."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from backend.imaging.models import ImportJob, ReferenceLabelMap, Scan, ScanFile
from backend.imaging.services import ImportInput, import_job_create, import_job_run
from backend.imaging.volumes import reference_labels
from mltasks.geometry import Geometry
from mltasks.io import read_label_onto, write_dicom_series, write_volume
from mltasks.preprocess import resample_labels_to_network
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    stored_files,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db

GEOMETRY = Geometry(shape=(5, 24, 20), spacing=(2.0, 1.5, 1.5), origin=(-15.0, -18.0, 40.0))


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


@pytest.fixture
def pool(db):
    return PoolFactory(name="pool")


def ct(seed: int = 0, geometry: Geometry = GEOMETRY) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1000, size=geometry.shape).astype(np.int16)


def run(pool, *paths: Path, **options) -> ImportJob:
    inputs = [ImportInput(Path(p), Path(p).name) for p in paths]
    labels = options.pop("labels", None)
    job = import_job_create(pool=pool, user=None, inputs=inputs, schedule=False,
                            labels=ImportInput(Path(labels), Path(labels).name) if labels else None, **options)
    return import_job_run(job=ImportJob.objects.get(pk=job.pk))


def assert_nothing_left(settings) -> None:
    assert (Scan.objects.count(), ScanFile.objects.count(), ReferenceLabelMap.objects.count()) == (0, 0, 0)
    assert stored_files(settings.MEDIA_ROOT) == []


def only_error(job: ImportJob) -> str:
    assert job.status == "failed"
    assert len(job.results) == 1 and job.results[0]["status"] == "failed"
    return job.results[0]["error"]


def zip_of(path: Path, members: dict[str, bytes], *, links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


# --- not an image, corrupt, unusable DICOM ----------------------------------------------------


def test_a_text_file_uploaded_is_reported_as_not_an_image(client, pool, settings, tmp_path,
                                                          django_capture_on_commit_callbacks):
    user = UserFactory()
    MembershipFactory(user=user, project=ProjectFactory(pools=[pool]), role="lead")
    client.force_login(user)
    notes = tmp_path / "notes.txt"
    notes.write_text("patient notes, not a CT\n")
    with open(notes, "rb") as fh, django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("import-create"), {"pool": pool.id, "files": [fh]})
    assert response.status_code == 202
    job = client.get(reverse("import-job", args=[response.json()["id"]])).json()
    assert job["status"] == "failed"
    assert job["results"][0]["name"] == "notes.txt"
    assert job["results"][0]["error"].startswith("notes.txt: not an image file MyoLabel can read")
    assert "staging" not in job["results"][0]["error"]  # no server path leaks into the message
    assert_nothing_left(settings)


def test_a_truncated_dicom_slice_is_named(pool, settings, tmp_path):
    files = write_dicom_series(ct(), GEOMETRY, tmp_path / "series")
    files[2].write_bytes(files[2].read_bytes()[:-200])
    error = only_error(run(pool, tmp_path / "series"))
    assert error.startswith(f"series/{files[2].name}: the DICOM pixel data cannot be decoded")
    assert_nothing_left(settings)


def test_a_corrupt_zip_is_reported(pool, settings, tmp_path):
    archive = zip_of(tmp_path / "ct.zip", {"a.dcm": b"x" * 5000})
    archive.write_bytes(archive.read_bytes()[:60])
    error = only_error(run(pool, archive))
    assert error.startswith("ct.zip: not a readable zip archive")
    assert_nothing_left(settings)


def test_an_mr_series_is_refused(pool, settings, tmp_path):
    write_dicom_series(ct(), GEOMETRY, tmp_path / "mr", modality="MR")
    assert "mr: series has modality MR, not CT" in only_error(run(pool, tmp_path / "mr"))
    assert_nothing_left(settings)


def test_a_gantry_tilted_series_is_refused(pool, settings, tmp_path):
    tilt = np.radians(12.0)
    sheared = (1.0, 0.0, 0.0, 0.0, 1.0, np.sin(tilt), 0.0, 0.0, np.cos(tilt))
    geometry = Geometry(shape=GEOMETRY.shape, spacing=GEOMETRY.spacing, direction=sheared)
    write_dicom_series(ct(), geometry, tmp_path / "tilted")
    error = only_error(run(pool, tmp_path / "tilted"))
    assert error.startswith("tilted: the slices are sheared by a gantry tilt of 12.0 deg")
    assert_nothing_left(settings)


def test_a_series_with_a_missing_slice_is_refused(pool, settings, tmp_path):
    files = write_dicom_series(ct(), GEOMETRY, tmp_path / "gappy")
    files[2].unlink()
    error = only_error(run(pool, tmp_path / "gappy"))
    assert error.startswith("gappy: uneven slice spacing (usual interval 2.00 mm; about 1 slice(s) missing")
    assert_nothing_left(settings)


# --- zips ---------------------------------------------------------------------------------------


def test_a_zip_with_two_series_imports_each_as_its_own_scan(pool, tmp_path):
    write_dicom_series(ct(1), GEOMETRY, tmp_path / "zip" / "a", series_uid="1.2.3.1", series_description="arterial")
    write_dicom_series(ct(2), GEOMETRY, tmp_path / "zip" / "b", series_uid="1.2.3.2", series_description="venous")
    members = {p.relative_to(tmp_path / "zip").as_posix(): p.read_bytes()
               for p in sorted((tmp_path / "zip").rglob("*.dcm"))}
    job = run(pool, zip_of(tmp_path / "study.zip", members))
    assert job.status == "done"
    assert [(r["name"], r["status"]) for r in job.results] == [
        ("study.zip series 1.2.3.1", "imported"), ("study.zip series 1.2.3.2", "imported")]
    scans = Scan.objects.order_by("series_uid")
    assert [(s.name, s.series_uid, s.files.count()) for s in scans] == [
        ("study arterial", "1.2.3.1", 5), ("study venous", "1.2.3.2", 5)]


def test_series_uid_chooses_one_series_of_a_zip(tmp_path):
    write_dicom_series(ct(1), GEOMETRY, tmp_path / "zip" / "a", series_uid="1.2.3.1")
    write_dicom_series(ct(2), GEOMETRY, tmp_path / "zip" / "b", series_uid="1.2.3.2")
    members = {p.relative_to(tmp_path / "zip").as_posix(): p.read_bytes()
               for p in sorted((tmp_path / "zip").rglob("*.dcm"))}
    archive = zip_of(tmp_path / "study.zip", members)
    call_command("import_ct", str(archive), "--pool", "p", "--series-uid", "1.2.3.2")
    assert list(Scan.objects.values_list("series_uid", flat=True)) == ["1.2.3.2"]
    with pytest.raises(CommandError, match="1 of 1 imports failed"):
        call_command("import_ct", str(archive), "--pool", "p", "--series-uid", "9.9")
    job = ImportJob.objects.latest("id")
    assert job.results[0]["error"].startswith("study.zip: series 9.9 not found; the series present are: 1.2.3.")


@pytest.mark.parametrize(
    ("members", "links", "expected"),
    [
        ({"../evil.dcm": b"x"}, None, "points outside the archive ('..')"),
        ({"/etc/evil.dcm": b"x"}, None, "has an absolute path"),
        ({"ok.dcm": b"x"}, {"link.dcm": "/etc/passwd"}, "is a symbolic link"),
    ],
    ids=["dotdot", "absolute", "symlink"],
)
def test_an_unsafe_zip_is_refused(pool, settings, tmp_path, members, links, expected):
    archive = zip_of(tmp_path / "upload.zip", members, links=links)
    error = only_error(run(pool, archive))
    assert error.startswith("upload.zip: member ") and expected in error and "refused" in error
    assert_nothing_left(settings)
    assert not (tmp_path / "evil.dcm").exists()


def test_a_zip_bomb_is_refused_by_ratio_and_by_total_size(pool, settings, tmp_path):
    archive = zip_of(tmp_path / "bomb.zip", {"zeros.dcm": bytes(8 * 2**20)})
    settings.MYOLABEL_MAX_ZIP_RATIO = 50.0
    error = only_error(run(pool, archive))
    assert "bomb.zip: member 'zeros.dcm' expands" in error and "(limit 50)" in error and "zip bomb" in error
    settings.MYOLABEL_MAX_ZIP_RATIO = 1e9
    settings.MYOLABEL_MAX_EXTRACTED_BYTES = 2**20
    error = only_error(run(pool, archive))
    assert error.startswith("bomb.zip: the zip expands to 8 MiB, more than the limit of 1 MiB")
    assert_nothing_left(settings)


# --- label maps ----------------------------------------------------------------------------------


def test_a_label_map_on_another_grid_is_resampled_by_physical_position(pool, tmp_path):
    hu = ct(3)
    write_volume(hu, GEOMETRY, tmp_path / "ct.nii.gz")
    # Labels on a finer grid, flipped in x (direction -1), covering the same box.
    fine = Geometry(shape=(9, 48, 40), spacing=(1.0, 0.75, 0.75),
                    origin=(-15.0 + 19 * 1.5 + 0.375 - 0.75, -18.0 - 0.375, 40.0),
                    direction=(-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    labels = np.zeros(fine.shape, np.uint8)
    labels[2:7, 10:30, 5:25] = 2
    write_volume(labels, fine, tmp_path / "labels.nrrd")
    job = run(pool, tmp_path / "ct.nii.gz", labels=tmp_path / "labels.nrrd", label_set=LabelSetFactory(labels__n=2))
    assert job.status == "done", job.results
    reference = ReferenceLabelMap.objects.get()
    scan = reference.scan
    on_ct = read_label_onto(tmp_path / "labels.nrrd", GEOMETRY)
    assert on_ct.any() and set(np.unique(on_ct)) == {0, 2}
    expected = resample_labels_to_network(on_ct, GEOMETRY, Geometry.from_dict(scan.geometry))
    np.testing.assert_array_equal(reference_labels(reference), expected)
    assert scan.source_format == "nifti" and scan.series_uid == "" and scan.files.count() == 1


def test_a_label_map_not_overlapping_the_ct_is_refused(pool, settings, tmp_path):
    write_volume(ct(4), GEOMETRY, tmp_path / "ct.mha")
    far = Geometry(shape=GEOMETRY.shape, spacing=GEOMETRY.spacing, origin=(500.0, 500.0, 900.0))
    write_volume(np.ones(far.shape, np.uint8), far, tmp_path / "far.nii.gz")
    error = only_error(run(pool, tmp_path / "ct.mha", labels=tmp_path / "far.nii.gz"))
    assert error.startswith("far.nii.gz: no labelled voxel of the label map falls inside the CT")
    assert_nothing_left(settings)


def test_label_values_outside_the_label_set_are_refused_by_value(pool, settings, tmp_path):
    write_volume(ct(5), GEOMETRY, tmp_path / "ct.nrrd")
    labels = np.zeros(GEOMETRY.shape, np.uint8)
    labels[1, 5:10, 5:10] = 1
    labels[2, 5:10, 5:10] = 7
    labels[3, 5:10, 5:10] = 9
    write_volume(labels, GEOMETRY, tmp_path / "labels.nii.gz")
    job = run(pool, tmp_path / "ct.nrrd", labels=tmp_path / "labels.nii.gz", label_set=LabelSetFactory(labels__n=3))
    assert only_error(job).startswith("labels.nii.gz: label values 7, 9 are not in the label set (values 0-3)")
    assert_nothing_left(settings)


def test_an_empty_label_map_is_refused(pool, settings, tmp_path):
    write_volume(ct(6), GEOMETRY, tmp_path / "ct.nii")
    write_volume(np.zeros(GEOMETRY.shape, np.uint8), GEOMETRY, tmp_path / "labels.nii.gz")
    error = only_error(run(pool, tmp_path / "ct.nii", labels=tmp_path / "labels.nii.gz"))
    assert error.startswith("labels.nii.gz: the label map is empty")
    assert_nothing_left(settings)


# --- duplicates, several inputs, clean-up -------------------------------------------------------


def test_the_same_series_twice_is_refused_naming_the_existing_scan(pool, settings, tmp_path):
    write_dicom_series(ct(7), GEOMETRY, tmp_path / "first", series_uid="1.2.840.99")
    write_dicom_series(ct(8), GEOMETRY, tmp_path / "again", series_uid="1.2.840.99")
    assert run(pool, tmp_path / "first").status == "done"
    scan = Scan.objects.get()
    error = only_error(run(PoolFactory(name="other"), tmp_path / "again"))
    assert error == (f'again: series 1.2.840.99 is already imported as scan "first" (id {scan.pk}) '
                     'in pool "pool"; it was not imported again')
    assert Scan.objects.count() == 1 and len(stored_files(settings.MEDIA_ROOT)) == 1 + 5


def test_the_same_pixels_twice_are_refused_by_content_hash(pool, tmp_path):
    write_volume(ct(9), GEOMETRY, tmp_path / "a.nii.gz")
    write_volume(ct(9), GEOMETRY, tmp_path / "b.mha")
    job = run(pool, tmp_path / "a.nii.gz", tmp_path / "b.mha")
    assert job.status == "done"
    assert job.results[0]["status"] == "imported"
    assert job.results[1]["error"].startswith("b.mha: the same image data is already imported as scan \"a\"")
    assert Scan.objects.count() == 1


def test_each_input_of_a_job_succeeds_or_fails_on_its_own(pool, tmp_path):
    write_volume(ct(10), GEOMETRY, tmp_path / "good.nrrd")
    (tmp_path / "bad.nii.gz").write_text("not gzip")
    write_volume(ct(11), GEOMETRY, tmp_path / "also-good.mhd", compress=False)
    job = run(pool, tmp_path / "good.nrrd", tmp_path / "bad.nii.gz", tmp_path / "also-good.mhd")
    assert [(r["name"], r["status"]) for r in job.results] == [
        ("good.nrrd", "imported"), ("bad.nii.gz", "failed"), ("also-good.mhd", "imported")]
    assert job.results[1]["error"].startswith("bad.nii.gz: ")
    assert job.status == "done" and job.percent == 100.0
    mhd = Scan.objects.get(name="also-good")
    assert sorted(mhd.files.values_list("original_name", flat=True)) == ["also-good.mhd", "also-good.raw"]


def test_a_failure_after_files_were_stored_removes_them(pool, settings, tmp_path, monkeypatch):
    write_volume(ct(12), GEOMETRY, tmp_path / "ct.nii.gz")
    labels = np.zeros(GEOMETRY.shape, np.uint8)
    labels[2, 4:9, 4:9] = 1
    write_volume(labels, GEOMETRY, tmp_path / "labels.nii.gz")

    def broken_create(*args, **kwargs):
        assert len(stored_files(settings.MEDIA_ROOT)) == 3  # volume, original, labels
        raise OSError("disk full")

    monkeypatch.setattr(ReferenceLabelMap.objects, "create", broken_create)
    error = only_error(run(pool, tmp_path / "ct.nii.gz", labels=tmp_path / "labels.nii.gz"))
    assert error == "ct.nii.gz: internal error while importing (OSError); see the server log"
    assert_nothing_left(settings)
