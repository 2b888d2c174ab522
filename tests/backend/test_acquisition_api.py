"""The acquisition REST API: roles, the annotator's round trip, the lead's controls, downloads."""

from __future__ import annotations

import base64
import io
import zlib

import numpy as np
import pytest
import torch
from rest_framework.test import APIClient

from backend.acquisition import codec
from backend.acquisition.models import Query, Segmentation
from backend.acquisition.outputs import export
from backend.acquisition.outputs.segmentation import segmentation_run
from backend.acquisition.states import State
from backend.acquisition.steps.phases import phase_execute
from backend.imaging.volumes import reference_labels
from tests.backend.factories import (
    UserFactory,
    acquisition_project,
    one_torch_thread_with_tmp_storage,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path, monkeypatch):
    monkeypatch.setattr("backend.core.jobs.send", lambda *a, **k: None)  # phases are run by hand here
    yield from one_torch_thread_with_tmp_storage(settings, tmp_path)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def annotating():
    """A project whose first step waits for answers; (project, lead, annotator)."""
    project, lead, (annotator, _) = acquisition_project()
    status, body = post(client_for(lead), f"/api/projects/{project.id}/steps/")
    assert status == 201, body
    for phase in (State.INFERRING, State.SELECTING):
        assert phase_execute(step_id=body["id"], phase=phase, runner="t|1") == "done"
    return project, lead, annotator


def post(client, url, data=None):
    response = client.post(url, data or {}, format="json")
    return response.status_code, (response.json() if response.content else None)


def test_annotators_cannot_start_steps_and_strangers_see_nothing():
    project, lead, (annotator, _) = acquisition_project(seed_fraction=None)
    url = f"/api/projects/{project.id}/steps/"
    assert post(client_for(annotator), url)[0] == 403
    assert post(client_for(UserFactory()), url)[0] == 404
    assert client_for(UserFactory()).get(url).status_code == 404
    status, body = post(client_for(lead), url)
    assert status == 201 and body["state"] == "inferring"  # no label yet: a cold start (test_cold_start.py)
    assert client_for(annotator).get(f"/api/projects/{project.id}/acquisition/mac/").status_code == 403


def test_an_annotator_takes_a_query_and_answers_it_through_the_api(annotating):
    project, lead, annotator = annotating
    client = client_for(annotator)
    response = client.post(f"/api/projects/{project.id}/queries/next/")
    assert response.status_code == 200
    q = response.json()
    shape = (q["height"], q["width"])
    mask = np.unpackbits(np.frombuffer(base64.b64decode(q["mask"]), np.uint8), count=shape[0] * shape[1])
    mask = mask.astype(bool).reshape(shape)
    assert int(mask.sum()) == q["n_queried"]
    predicted = np.frombuffer(zlib.decompress(base64.b64decode(q["predicted"])), np.uint8).reshape(shape)
    u = np.frombuffer(zlib.decompress(base64.b64decode(q["uncertainty"])), "<f2").reshape(shape)
    assert predicted.max() <= 22 and np.all(u >= 0)
    if q["n_queried"]:  # tau on a one-epoch net: u >= tau wherever queried
        assert float(u[mask].min()) >= 1e-3 * 0.999
    query = Query.objects.get(pk=q["id"])
    ref = np.asarray(reference_labels(query.scan.reference_labels.get())[query.z])
    bad = np.where(mask, ref, 255).astype(np.uint8)
    bad[~mask] = 1
    url = f"/api/projects/{project.id}/queries/{q['id']}/submit/"
    status, body = post(client, url, {"labels": base64.b64encode(bad.tobytes()).decode()})
    assert status == 400 and body["code"] == "outside_query"
    assert "lie outside the query" in body["detail"]
    good = zlib.compress(np.where(mask, ref, 255).astype(np.uint8).tobytes())
    status, body = post(client, url, {"labels": base64.b64encode(good).decode(), "encoding": "zlib",
                                      "seconds_spent": 4.5})
    assert status == 201, body
    assert (body["status"], body["seconds_spent"]) == ("answered", 4.5)
    status, body = post(client, url, {"labels": base64.b64encode(good).decode(), "encoding": "zlib"})
    assert (status, body["code"]) == (409, "query_closed")


def test_the_lead_previews_tau_and_changes_settings(annotating):
    project, lead, annotator = annotating
    client = client_for(lead)
    maps = [codec.unpack_float16(q.uncertainty, (q.height, q.width)) for q in Query.objects.all()]
    tau = float(np.median(np.concatenate([m.ravel() for m in maps])))
    body = client.get(f"/api/projects/{project.id}/acquisition/tau-preview/",
                      {"tau": tau, "target_mac": 0.1}).json()
    assert body["queried_pixels"] == sum(int((m >= tau).sum()) for m in maps)
    assert body["total_pixels"] == sum(m.size for m in maps)
    assert body["suggested_queried_pixels"] <= 0.1 * body["total_pixels"]
    response = client.patch(f"/api/projects/{project.id}/acquisition/settings/",
                            {"tau": 5e-3, "strategy": "random_pixels", "stop_target_dice": 0.8}, format="json")
    assert response.status_code == 200, response.json()
    project.refresh_from_db()
    assert (project.tau, project.strategy, project.stop_target_dice) == (5e-3, "random_pixels", 0.8)
    response = client_for(annotator).patch(f"/api/projects/{project.id}/acquisition/settings/", {"tau": 1.0},
                                           format="json")
    assert response.status_code == 403


def test_the_current_model_segments_a_scan_and_exports_it(annotating, tmp_path):
    project, lead, annotator = annotating
    client = client_for(lead)
    models = client.get(f"/api/projects/{project.id}/models/").json()
    assert [m["number"] for m in models] == [0] and models[0]["is_current"]
    scan = project.test_scans.get()
    status, body = post(client, f"/api/projects/{project.id}/segmentations/", {"scan_id": scan.id})
    assert status == 202 and body["status"] == "pending"
    assert segmentation_run(segmentation_id=body["id"]) == "done"
    assert segmentation_run(segmentation_id=body["id"]) == "skipped"
    seg = Segmentation.objects.get(pk=body["id"])
    names = [row["name"] for row in seg.report]
    assert len(names) == 22 and {"volume_ml", "mean_hu", "psv"} <= set(seg.report[0])
    base = f"/api/projects/{project.id}/segmentations/{seg.id}/"
    csv_text = client.get(base + "report.csv").content.decode()
    assert csv_text.splitlines()[0] == "name,value,voxels,volume_ml,mean_hu,psv,predicted_dice"
    assert len(csv_text.splitlines()) == 23
    import SimpleITK as sitk

    nifti = client.get(base + "labels.nii.gz")
    assert nifti.status_code == 200
    path = tmp_path / "labels.nii.gz"
    path.write_bytes(b"".join(nifti.streaming_content) if nifti.streaming else nifti.content)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert labels.shape == tuple(scan.shape)
    import pydicom

    dcm = pydicom.dcmread(io.BytesIO(client.get(base + "seg.dcm").content))
    assert dcm.Modality == "SEG"
    present = {row["value"] for row in seg.report if row["voxels"]}
    assert len(dcm.SegmentSequence) == len(present)
    checkpoint = client.get(f"/api/projects/{project.id}/models/{models[0]['id']}/checkpoint/")
    blob = b"".join(checkpoint.streaming_content)
    data = torch.load(io.BytesIO(blob), weights_only=True)
    assert data["net_config"]["matrix"] == 64


def test_nifti_downloads_come_on_the_original_ct_grid_unless_the_working_grid_is_asked(annotating, tmp_path):
    import SimpleITK as sitk

    project, lead, _ = annotating
    client = client_for(lead)
    scan = project.test_scans.get()
    _, body = post(client, f"/api/projects/{project.id}/segmentations/", {"scan_id": scan.id})
    assert segmentation_run(segmentation_id=body["id"]) == "done"
    # The CT as imported had twice the in-plane resolution over the same field of view.
    working = dict(scan.geometry)
    z, y, x = working["shape"]
    original = {**working, "shape": [z, 2 * y, 2 * x],
                "spacing": [working["spacing"][0], working["spacing"][1] / 2, working["spacing"][2] / 2]}
    scan.original_geometry = original
    scan.save(update_fields=["original_geometry"])
    base = f"/api/projects/{project.id}/segmentations/{body['id']}/"

    def read(response, name):
        assert response.status_code == 200, response.content[:300]
        (tmp_path / name).write_bytes(response.content)
        return sitk.ReadImage(str(tmp_path / name))

    seg_labels = export.load_npy(Segmentation.objects.get(pk=body["id"]).labels)
    on_ct = read(client.get(base + "labels.nii.gz"), "a.nii.gz")
    assert on_ct.GetSize() == (2 * x, 2 * y, z)
    assert on_ct.GetSpacing() == pytest.approx(original["spacing"][::-1])
    # Same origin, half the spacing: every second original voxel centre is a working voxel centre.
    values = sitk.GetArrayFromImage(on_ct)
    assert np.array_equal(values[:, ::2, ::2], seg_labels)
    assert np.array_equal(np.unique(values), np.unique(seg_labels))
    u = read(client.get(base + "uncertainty.nii.gz"), "u.nii.gz")
    assert u.GetSize() == (2 * x, 2 * y, z)
    assert read(client.get(base + "labels.nii.gz", {"grid": "working"}), "w.nii.gz").GetSize() == (x, y, z)
    bad = client.get(base + "labels.nii.gz", {"grid": "diagonal"})
    assert bad.status_code == 400
    assert "grid" in bad.content.decode() and "original" in bad.content.decode()
