"""Searching an archive (QIDO-RS) and importing its series (WADO-RS) through the upload's import
job: the same checks and messages, progress events, and only project admins may do it."""

from __future__ import annotations

import pydicom
import pytest

from backend.imaging.models import DicomWebArchive, ImportJob, Scan, ScanFile
from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    use_tmp_storage,
)
from tests.orthanc import free_port, small_ct_series

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


@pytest.fixture
def admin(client):
    """A project admin with a pool; ``client`` logged in as them."""
    user, pool = UserFactory(username="pacs-admin"), PoolFactory(name="abdomen")
    MembershipFactory(user=user, project=ProjectFactory(pools=[pool]), role="admin")
    client.force_login(user)
    client.pool = pool
    return client


def _stored_series(orthanc, tmp_path, *, patient="PAT-001", description="thigh CT", seed=0) -> dict:
    paths = small_ct_series(tmp_path / f"ct{seed}", box=6, hu_inside=40 + seed, series_description=description,
                            patient_id=patient)
    for path in paths:  # a study date and description to search by
        ds = pydicom.dcmread(path)
        ds.StudyDate, ds.StudyDescription = "20260314", f"{description} study"
        ds.save_as(path)
    orthanc.store_files(paths)
    first = pydicom.dcmread(paths[0])
    return {"study": first.StudyInstanceUID, "series": first.SeriesInstanceUID,
            "sops": {pydicom.dcmread(p).SOPInstanceUID for p in paths}}


def _studies(client, archive, **query):
    return client.get(f"/api/pacs/archives/{archive.id}/studies/", query)


def _import(client, archive, body):
    return client.post(f"/api/pacs/archives/{archive.id}/imports/", body, content_type="application/json")


def test_studies_are_found_by_patient_date_modality_and_description(admin, archive, orthanc, tmp_path):
    first = _stored_series(orthanc, tmp_path, patient="PAT-001", description="thigh CT")
    _stored_series(orthanc, tmp_path, patient="PAT-002", description="hip CT", seed=1)

    for query in ({"patient_id": "001"}, {"description": "thigh"}, {"modality": "ct", "patient_id": "PAT-001"},
                  {"date_from": "2026-03-14", "date_to": "2026-03-14", "patient_id": "001"}):
        found = _studies(admin, archive, **query)
        assert found.status_code == 200, found.content
        assert [s["study_uid"] for s in found.json()] == [first["study"]], query
    assert len(_studies(admin, archive).json()) == 2
    assert _studies(admin, archive, date_from="2026-03-15").json() == []
    study = _studies(admin, archive, patient_id="001").json()[0]
    assert study["patient_id"] == "PAT-001" and study["modalities"] == ["CT"] and study["n_instances"] == 4

    series = admin.get(f"/api/pacs/archives/{archive.id}/series/", {"study_uid": first["study"]}).json()
    assert series == [{"series_uid": first["series"], "study_uid": first["study"], "modality": "CT",
                       "description": "thigh CT", "number": 1, "body_part": "", "n_instances": 4,
                       "imported": False}]


@pytest.mark.parametrize(("query", "field", "says"), [
    ({"date_from": "14.03.2026"}, "date_from", "Date has wrong format"),
    ({"date_from": "2026-03-15", "date_to": "2026-03-14"}, "date_to", "before its start"),
    ({"modality": "C*T"}, "modality", "letters only"),
])
def test_a_bad_search_is_refused_with_the_field_named(admin, archive, query, field, says):
    response = _studies(admin, archive, **query)
    assert response.status_code == 400
    assert says in response.json()["errors"][field][0]


def test_a_series_is_imported_into_the_pool_like_an_upload(admin, archive, orthanc, tmp_path, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    stored = _stored_series(orthanc, tmp_path)
    events = []
    monkeypatch.setattr("backend.imaging.pacs.services.publish", lambda group, payload: events.append(payload))
    monkeypatch.setattr("backend.imaging.services.publish", lambda group, payload: events.append(payload))

    with django_capture_on_commit_callbacks(execute=True):
        response = _import(admin, archive, {"pool": admin.pool.id, "study_uid": stored["study"],
                                            "series_uids": [stored["series"]]})

    assert response.status_code == 202, response.content
    job = ImportJob.objects.get(pk=response.json()["id"])
    scan = Scan.objects.get()
    assert job.status == "done", job.results
    assert job.results == [{"name": "thigh CT #1 (Test PACS)", "status": "imported", "scan_id": scan.id}]
    assert (scan.pool, scan.series_uid, scan.study_uid, scan.source_format) == (
        admin.pool, stored["series"], stored["study"], "dicom")
    assert scan.original_geometry["shape"] == [4, 32, 32]
    kept = {pydicom.dcmread(f.file.open("rb")).SOPInstanceUID for f in ScanFile.objects.filter(scan=scan)}
    assert kept == stored["sops"]  # the originals as the archive sent them, for the DICOM-SEG
    assert [e["status"] for e in events][0] == "retrieving" and events[-1]["status"] == "done"
    # Followed like an upload, and the series now shows as imported.
    assert admin.get(f"/api/imports/{job.id}/").json()["status"] == "done"
    series = admin.get(f"/api/pacs/archives/{archive.id}/series/", {"study_uid": stored["study"]}).json()
    assert series[0]["imported"] is True


def test_a_series_imported_twice_fails_with_the_uploads_message(admin, archive, orthanc, tmp_path,
                                                                django_capture_on_commit_callbacks):
    stored = _stored_series(orthanc, tmp_path)
    body = {"pool": admin.pool.id, "study_uid": stored["study"], "series_uids": [stored["series"]]}
    with django_capture_on_commit_callbacks(execute=True):
        _import(admin, archive, body)
    with django_capture_on_commit_callbacks(execute=True):
        second = _import(admin, archive, body).json()
    job = ImportJob.objects.get(pk=second["id"])
    assert job.status == "failed"
    assert "is already imported" in job.results[0]["error"]
    assert Scan.objects.count() == 1 and ScanFile.objects.count() == 4


def test_a_series_the_archive_does_not_hold_fails_and_nothing_is_stored(admin, archive, orthanc, tmp_path,
                                                                        django_capture_on_commit_callbacks):
    stored = _stored_series(orthanc, tmp_path)
    with django_capture_on_commit_callbacks(execute=True):
        response = _import(admin, archive, {"pool": admin.pool.id, "study_uid": stored["study"],
                                            "series_uids": ["1.2.3.4"]})
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.status == "failed"
    assert job.results == [{"name": "series 1.2.3.4", "status": "failed", "error": (
        f"series 1.2.3.4: not found in study {stored['study']} of archive 'Test PACS'; it may have been "
        "moved or deleted; search again")}]
    assert not Scan.objects.exists()


@pytest.mark.parametrize(("body", "says"), [
    ({"study_uid": "1.2.x", "series_uids": ["1.2"]}, "a study UID is digits and dots"),
    ({"study_uid": "1.2", "series_uids": []}, "This list may not be empty"),
    ({"study_uid": "1.2", "series_uids": ["1.2;DROP"]}, "a series UID is digits and dots"),
    ({"study_uid": "1.2", "series_uids": [f"1.{i}" for i in range(51)]}, "no more than 50"),
])
def test_a_bad_import_request_is_refused_and_no_job_is_made(admin, archive, body, says):
    response = _import(admin, archive, {"pool": admin.pool.id, **body})
    assert response.status_code == 400
    assert says in response.json()["detail"]
    assert not ImportJob.objects.exists()


def test_an_archive_that_stopped_answering_gives_a_clear_502(admin):
    gone = DicomWebArchive.objects.create(name="Gone", url=f"http://127.0.0.1:{free_port()}/dicom-web")
    response = _studies(admin, gone)
    assert response.status_code == 502 and response.json()["code"] == "pacs_unreachable"
    assert "cannot be reached" in response.json()["detail"]


@pytest.mark.parametrize("role", ["lead", "annotator"])
def test_leads_and_annotators_may_not_search_or_import(client, archive, role):
    user, pool = UserFactory(), PoolFactory()
    MembershipFactory(user=user, project=ProjectFactory(pools=[pool]), role=role)
    client.force_login(user)
    assert _studies(client, archive).status_code == 403
    response = _import(client, archive, {"pool": pool.id, "study_uid": "1.2", "series_uids": ["1.2.3"]})
    assert response.status_code == 403 and "admin role" in response.json()["detail"]
    assert not ImportJob.objects.exists()


def test_an_admin_imports_only_into_pools_of_projects_they_administer(admin, archive):
    other = PoolFactory(name="someone else's")
    ProjectFactory(pools=[other])
    body = {"study_uid": "1.2", "series_uids": ["1.2.3"]}
    assert _import(admin, archive, {"pool": other.id, **body}).status_code == 404
    assert not ImportJob.objects.exists()


def test_an_admin_who_only_leads_the_pools_project_gets_403(client, archive):
    user, pool = UserFactory(), PoolFactory()
    MembershipFactory(user=user, project=ProjectFactory(), role="admin")  # admin elsewhere: may search
    MembershipFactory(user=user, project=ProjectFactory(pools=[pool]), role="lead")
    client.force_login(user)
    response = _import(client, archive, {"pool": pool.id, "study_uid": "1.2", "series_uids": ["1.2.3"]})
    assert response.status_code == 403 and "admin role" in response.json()["detail"]
    assert not ImportJob.objects.exists()


def test_series_of_a_study_uid_that_is_not_one_are_refused(admin, archive):
    response = admin.get(f"/api/pacs/archives/{archive.id}/series/", {"study_uid": "1.2.*"})
    assert response.status_code == 400
    assert "a study UID is digits and dots" in response.json()["errors"]["study_uid"][0]


def test_an_import_whose_archive_password_cannot_be_read_fails_with_the_reason(
        admin, archive, orthanc, tmp_path, settings, django_capture_on_commit_callbacks):
    stored = _stored_series(orthanc, tmp_path)
    settings.MYOLABEL_PACS_KEY = "a key the password was not encrypted with"
    with django_capture_on_commit_callbacks(execute=True):
        response = _import(admin, archive, {"pool": admin.pool.id, "study_uid": stored["study"],
                                            "series_uids": [stored["series"]]})
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.status == "failed" and "enter it again" in job.results[0]["error"]
    assert not Scan.objects.exists()
