"""The two real DICOM series of ../shared/data import by upload and by command, geometry intact."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse

from backend.core.realtime import project_group, user_group
from backend.imaging.models import ImportJob, ReferenceLabelMap, Scan, ScanFile
from backend.imaging.volumes import reference_labels, scan_volume
from mltasks.geometry import Geometry
from mltasks.grid import WorkingGrid, working_grid
from mltasks.io import list_dicom_series, read_label_onto, read_volume
from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    use_tmp_storage,
)

pytestmark = [pytest.mark.django_db, pytest.mark.shared_data]

SIEMENS = "ct-dicom-siemens-abdomen"
VHF = "ct-dicom-vhf-pelvis"


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


@pytest.fixture
def lead(db):
    user = UserFactory(username="lead")
    pool = PoolFactory(name="hips")
    MembershipFactory(user=user, project=ProjectFactory(pools=[pool]), role="lead")
    return user, pool


def _zip(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"{folder.name}/{p.name}")
    return out


def _assert_scan_matches(scan: Scan, folder: Path, n_files: int) -> None:
    hu, geometry = read_volume(folder)
    assert Geometry.from_dict(scan.original_geometry) == geometry
    grid = working_grid(hu, geometry)
    assert WorkingGrid.from_dict(scan.working_grid) == grid
    assert Geometry.from_dict(scan.geometry) == grid.geometry
    volume = scan_volume(scan)
    assert volume.dtype == np.int16 and volume.shape == grid.shape
    np.testing.assert_array_equal(volume, grid.crop(hu))  # the CT's own voxels, not resampled
    assert scan.content_hash == hashlib.sha256(hu.tobytes()).hexdigest()
    assert scan.files.count() == n_files
    identifiers = list_dicom_series(folder)[0].identifiers()
    assert scan.source_format == "dicom" and scan.modality == "CT"
    # The anonymised Siemens series has no UIDs at all; VHF has them.
    assert (scan.series_uid, scan.study_uid, scan.patient_id, scan.series_description) == (
        identifiers["SeriesInstanceUID"], identifiers["StudyInstanceUID"], identifiers["PatientID"],
        identifiers["SeriesDescription"])


def test_siemens_zip_imports_through_the_upload_endpoint(client, lead, shared_data, tmp_path, monkeypatch,
                                                         django_capture_on_commit_callbacks):
    user, pool = lead
    client.force_login(user)
    archive = _zip(shared_data / SIEMENS, tmp_path / "abdomen.zip")
    sent = []
    monkeypatch.setattr("backend.imaging.services.publish", lambda group, payload: sent.append((group, payload)))
    with open(archive, "rb") as fh, django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("import-create"), {"pool": pool.id, "files": [fh]})
    assert response.status_code == 202, response.content
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.status == "done", job.results
    assert job.results == [{"name": "abdomen.zip", "status": "imported", "scan_id": Scan.objects.get().pk}]
    scan = Scan.objects.get()
    _assert_scan_matches(scan, shared_data / SIEMENS, n_files=20)
    assert scan.manufacturer == "SIEMENS" and scan.imported_by == user
    # The 20 acquired slices; in-plane the rows from above the body to the table, and every
    # column: the arms touch the field of view's sides.
    assert scan.shape == (20, 353, 512)
    # Stored names fit the FileField's 100 characters (PostgreSQL enforces it, SQLite does not).
    assert max(len(f.file.name) for f in ScanFile.objects.all()) <= 100
    names = sorted(ScanFile.objects.values_list("original_name", flat=True))
    assert names[0].startswith(f"abdomen.zip/{SIEMENS}/CT.1.3.12")
    # Progress went to the project's and the uploader's groups, ending with "done".
    project = pool.projects.get()
    for group in (project_group(project.id), user_group(user.id)):
        events = [payload for to, payload in sent if to == group]
        assert events[0]["type"] == "import" and events[0]["job"] == job.id
        assert events[-1]["status"] == "done" and events[-1]["percent"] == 100.0
        assert any(e["file"] == "abdomen.zip" and e["status"] == "imported" for e in events)
    assert not Path(job.staging_dir).exists()


def test_vhf_files_and_label_map_import_through_the_chunked_upload(client, lead, shared_data,
                                                                   django_capture_on_commit_callbacks):
    user, pool = lead
    client.force_login(user)
    start = client.post(reverse("import-upload-start"), {"pool": pool.id}, content_type="application/json")
    assert start.status_code == 201
    job_id = start.json()["id"]
    uploads = [(f"series/{p.name}", p) for p in sorted((shared_data / VHF / "series").iterdir())]
    uploads.append(("label.nii.gz", shared_data / VHF / "label.nii.gz"))
    for name, path in uploads:
        data = path.read_bytes()
        for offset in range(0, len(data), 300_000):  # several chunks per file
            chunk = data[offset: offset + 300_000]
            response = client.put(
                reverse("import-chunk", args=[job_id, name]), chunk, content_type="application/octet-stream",
                HTTP_CONTENT_RANGE=f"bytes {offset}-{offset + len(chunk) - 1}/{len(data)}")
            assert response.status_code == 200, response.content
        assert response.json() == {"name": name, "received": len(data), "total": len(data)}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("import-complete", args=[job_id]), {"labels": "label.nii.gz"},
                               content_type="application/json")
    assert response.status_code == 202, response.content
    job = client.get(reverse("import-job", args=[job_id])).json()
    assert job["status"] == "done", job["results"]
    assert [r["name"] for r in job["results"]] == ["series"]
    scan = Scan.objects.get()
    _assert_scan_matches(scan, shared_data / VHF / "series", n_files=5)

    reference = ReferenceLabelMap.objects.get(scan=scan)
    original = Geometry.from_dict(scan.original_geometry)
    on_ct = read_label_onto(shared_data / VHF / "label.nii.gz", original)
    grid = WorkingGrid.from_dict(scan.working_grid)
    expected = grid.crop(on_ct)
    stored = reference_labels(reference)
    np.testing.assert_array_equal(stored, expected)
    assert reference.labelled_slices == [k for k in range(grid.n_slices) if expected[k].any()]
    assert reference.labelled_slices and reference.source_name == "label.nii.gz"
    # Brought back to the CT's own grid, the stored labels are the label map's voxels, exactly.
    np.testing.assert_array_equal(grid.to_original(np.asarray(stored)), on_ct)


@pytest.mark.parametrize("dataset", [SIEMENS, f"{VHF}/series"])
def test_both_series_import_through_the_command(dataset, shared_data):
    call_command("import_ct", str(shared_data / dataset), "--pool", "from disk")
    scan = Scan.objects.get(pool__name="from disk")
    _assert_scan_matches(scan, shared_data / dataset, n_files=len(list((shared_data / dataset).iterdir())))


def test_command_imports_the_vhf_label_map(shared_data):
    call_command("import_ct", str(shared_data / VHF / "series"), "--pool", "vhf",
                 "--labels", str(shared_data / VHF / "label.nii.gz"),
                 "--label-set", "Hip and thigh (Hiasa 2019)")
    reference = ReferenceLabelMap.objects.get()
    assert reference.label_set.name == "Hip and thigh (Hiasa 2019)"
    assert np.unique(reference_labels(reference)).tolist() == [0, 1]
