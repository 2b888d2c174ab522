"""``manage.py import_ct``: options, argument errors, and handing the job to the cpu worker."""

from __future__ import annotations

from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from backend.imaging.models import ImportJob, ReferenceLabelMap, Scan
from backend.imaging.tasks import import_job_run_task
from mltasks.geometry import Geometry
from mltasks.io import write_volume
from tests.backend.factories import use_tmp_storage

pytestmark = pytest.mark.django_db

GEOMETRY = Geometry(shape=(4, 16, 16), spacing=(3.0, 1.0, 1.0))


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def ct(tmp_path, name="ct.nii.gz", seed=0):
    hu = np.random.default_rng(seed).integers(-500, 500, GEOMETRY.shape).astype(np.int16)
    return write_volume(hu, GEOMETRY, tmp_path / name)


def test_queue_hands_the_job_to_the_cpu_worker(tmp_path, django_capture_on_commit_callbacks):
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        call_command("import_ct", str(ct(tmp_path)), "--pool", "p", "--queue", stdout=out)
    assert len(callbacks) == 1
    job = ImportJob.objects.get()
    assert f"import job {job.pk} queued" in out.getvalue()
    assert job.status == "done" and Scan.objects.get().name == "ct"  # eager in tests
    from backend.myolabel.celery import app

    assert app.amqp.router.route({}, import_job_run_task.name, (), {})["queue"].name == "cpu"


def test_it_reports_each_result_and_fails_when_one_failed(tmp_path):
    bad = tmp_path / "bad.mha"
    bad.write_text("nope")
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 of 2 imports failed"):
        call_command("import_ct", str(ct(tmp_path)), str(bad), "--pool", "p", stdout=out, stderr=err)
    assert f"imported ct.nii.gz as scan {Scan.objects.get().pk}" in out.getvalue()
    assert "FAILED bad.mha: " in err.getvalue()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--labels", "MISSING"], "MISSING: no such file or folder"),
        (["--label-set", "nope"], "no label set named 'nope'"),
        (["--user", "ghost"], "no user named 'ghost'"),
        (["--labelled-slices", "1,x"], "--labelled-slices takes comma-separated integers"),
    ],
)
def test_bad_options_are_explained(tmp_path, extra, message):
    with pytest.raises(CommandError, match=message):
        call_command("import_ct", str(ct(tmp_path)), "--pool", "p", *extra)
    assert not Scan.objects.exists()


def test_labels_need_a_single_input(tmp_path):
    labels = write_volume(np.ones(GEOMETRY.shape, np.uint8), GEOMETRY, tmp_path / "labels.nii.gz")
    with pytest.raises(CommandError, match="a reference label map belongs to one CT, but 2 inputs"):
        call_command("import_ct", str(ct(tmp_path)), str(ct(tmp_path, "b.nrrd", 1)), "--pool", "p",
                     "--labels", str(labels))
    assert not ImportJob.objects.exists()


def test_given_labelled_slices_mark_a_partial_map(tmp_path):
    labels = np.zeros(GEOMETRY.shape, np.uint8)
    labels[1:3, 4:12, 4:12] = 5
    path = write_volume(labels, GEOMETRY, tmp_path / "labels.nii.gz")
    # The 3 mm slices are the working slices: z indices 0-3.
    call_command("import_ct", str(ct(tmp_path)), "--pool", "p", "--labels", str(path), "--labelled-slices", "2,3")
    assert ReferenceLabelMap.objects.get().labelled_slices == [2, 3]
    with pytest.raises(CommandError, match="1 of 1 imports failed"):
        call_command("import_ct", str(ct(tmp_path, "c.nii.gz", 2)), "--pool", "p", "--labels", str(path),
                     "--labelled-slices", "99")
    assert "labelled slices [99] are outside the working grid's 0-3" in ImportJob.objects.latest("id").results[0]["error"]


def test_a_zip_of_image_files_imports_each_file(tmp_path):
    import zipfile

    ct(tmp_path, "a.nii.gz", 3)
    hu = np.random.default_rng(4).integers(-500, 500, GEOMETRY.shape).astype(np.int16)
    write_volume(hu, GEOMETRY, tmp_path / "b.mhd", compress=False)
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as zf:
        for name in ("a.nii.gz", "b.mhd", "b.raw"):
            zf.write(tmp_path / name, f"images/{name}")
    call_command("import_ct", str(tmp_path / "images.zip"), "--pool", "p")
    job = ImportJob.objects.get()
    assert [(r["name"], r["status"]) for r in job.results] == [
        ("images.zip/images/a.nii.gz", "imported"), ("images.zip/images/b.mhd", "imported")]
    assert sorted(Scan.objects.values_list("name", "source_format")) == [("a", "nifti"), ("b", "mha")]
