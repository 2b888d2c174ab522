"""Marking a scan as a test scan says at once that it leaves the pool; seeding that finds no
labels names the real reason (issue 21, item 2)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from backend.acquisition.models import HeldOutSlice, TrainingSlice
from tests.backend.factories import acquisition_project, use_tmp_storage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def the_only_scan(project):
    return project.pools.get().scans.get()


def test_marking_the_only_labelled_scan_as_a_test_scan_says_it_leaves_the_pool():
    project, lead, _ = acquisition_project(n_pool=1, n_test=0, seed_fraction=None)
    scan = the_only_scan(project)
    response = client_for(lead).patch(f"/api/projects/{project.id}/", {"test_scans": [scan.id]}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["test_scans"] == [scan.id]
    assert len(body["notices"]) == 1
    notice = body["notices"][0]
    assert notice.startswith(f"Scan {scan.id} (phantom 0) is now a test scan: it leaves the pool")
    assert "hold out slices" in notice
    # Unchanged test scans make no notice; a read has none.
    again = client_for(lead).patch(f"/api/projects/{project.id}/", {"tau": 0.002}, format="json").json()
    assert again["notices"] == []
    assert client_for(lead).get(f"/api/projects/{project.id}/").json()["notices"] == []


def test_seeding_when_the_labels_are_on_test_scans_names_them():
    project, lead, _ = acquisition_project(n_pool=0, n_test=1, seed_fraction=None)
    response = client_for(lead).post(f"/api/projects/{project.id}/training-set/seed/", {}, format="json")
    body = response.json()
    assert (response.status_code, body["code"]) == (409, "no_reference")
    test_scan = project.test_scans.get()
    assert f"the reference labels are on test scan(s) {test_scan.id} (phantom 0)" in body["detail"]
    assert "not in the pool" in body["detail"] and "hold out slices" in body["detail"]
    assert not TrainingSlice.objects.exists()


def test_seeding_when_every_labelled_slice_is_held_out_says_so():
    project, lead, _ = acquisition_project(n_pool=1, n_test=0, shape=(6, 32, 32), seed_fraction=None)
    scan = the_only_scan(project)
    HeldOutSlice.objects.bulk_create([HeldOutSlice(project=project, scan=scan, z=z) for z in (1, 4)])
    response = client_for(lead).post(f"/api/projects/{project.id}/training-set/seed/", {}, format="json")
    body = response.json()
    assert (response.status_code, body["code"]) == (409, "no_reference")
    assert body["detail"].startswith("every labelled slice of the pool scans is held out for evaluation")
    assert not TrainingSlice.objects.exists()


def test_a_scan_the_model_learnt_from_cannot_become_a_test_scan():
    project, lead, _ = acquisition_project(n_pool=2, n_test=0, seed_fraction=0.25)
    scan = project.pools.get().scans.order_by("id").first()
    response = client_for(lead).patch(f"/api/projects/{project.id}/", {"test_scans": [scan.id]}, format="json")
    body = response.json()
    assert (response.status_code, body["code"]) == (400, "invalid")
    assert "slice(s) in the project's training set" in body["errors"]["test_scans"][0]
    assert "Hold out slices of it instead" in body["detail"]
    assert not project.test_scans.exists()


def test_a_scan_with_held_out_slices_cannot_become_a_test_scan_until_they_are_cleared():
    project, lead, _ = acquisition_project(n_pool=1, n_test=0, seed_fraction=None)
    scan = the_only_scan(project)
    HeldOutSlice.objects.create(project=project, scan=scan, z=3)
    response = client_for(lead).patch(f"/api/projects/{project.id}/", {"test_scans": [scan.id]}, format="json")
    assert response.status_code == 400
    assert "has 1 held-out slice(s)" in response.json()["errors"]["test_scans"][0]
    assert not project.test_scans.exists()
