"""PACS in and out through the product's HTTP API, against a real Orthanc with its DICOMweb plugin:
the shared Siemens series is stored in Orthanc, found by QIDO, imported into a pool (WADO-RS, on
the worker), segmented, and its DICOM-SEG sent back (STOW-RS); read back from Orthanc, every SEG
frame refers to the CT instance at its own position."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.orthanc import with_uids

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

SIEMENS = "ct-dicom-siemens-abdomen"
# A project on the tiny network with a model version as a step records it (untrained weights from a
# fixed seed: the test is about where the SEG lands, not about its accuracy).
SETUP = """
import json
import tempfile
from pathlib import Path
import torch
from django.core.files import File
from django.contrib.auth.models import User
from backend.acquisition import ml_adapter
from backend.acquisition.models import ModelVersion
from backend.imaging.models import Pool
from backend.projects.models import DEFAULT_LABEL_SET_NAME, LabelSet, Project
from mltasks.nets import UNet
admin = User.objects.get(username="it-admin")
project = Project.objects.create(name="pacs", label_set=LabelSet.objects.get(name=DEFAULT_LABEL_SET_NAME),
    network_profile="tiny", network_config={"max_epochs": 1, "batch_size": 8}, mc_samples=2, created_by=admin)
pool = Pool.objects.create(name="pacs pool", created_by=admin)
project.pools.add(pool)
net, train = ml_adapter.network_configs(project.network_profile, project.network_config,
                                        ml_adapter.n_classes_of(project.label_set))
pixel_mm = ml_adapter.pixel_mm_of(project.network_profile, project.network_config)
torch.manual_seed(0)
path = Path(tempfile.mkdtemp()) / "model.pt"
ml_adapter.save_model(path, UNet(net), label_set=ml_adapter.label_set_of(project.label_set), train_config=train,
                      provenance={"project": project.pk, "project_name": project.name, "model_number": 0,
                                  "profile": project.network_profile, "pixel_mm": pixel_mm})
version = ModelVersion(project=project, number=0, origin={"kind": "trained"},
                       config={"net": net.to_dict(), "train": train.to_dict(), "profile": project.network_profile,
                               "pixel_mm": pixel_mm})
with path.open("rb") as fh:
    version.checkpoint.save("pacs-model-0.pt", File(fh), save=False)
version.save()
print(json.dumps({"project": project.id, "pool": pool.id}))
"""


def _wait(stack, path: str, done, what: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = stack.get(path)
        if done(body):
            return body
        time.sleep(0.5)
    raise AssertionError(f"{what} did not finish: {body}\nworker:\n{stack.log('worker')}")


def _ok(response: tuple[int, dict], expected: int) -> dict:
    status, body = response
    assert status == expected, body
    return body


def test_a_series_goes_from_orthanc_into_a_pool_and_its_seg_comes_back_beside_it(
        embedded_stack, orthanc, shared_data, tmp_path):
    stack = embedded_stack
    ids = with_uids(shared_data / SIEMENS, tmp_path / "series", seed="pacs-roundtrip")
    orthanc.store_files(sorted((tmp_path / "series").iterdir()))
    positions = {}  # SOP instance UID -> ImagePositionPatient of the CT as stored in Orthanc
    for path in (tmp_path / "series").iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        positions[ds.SOPInstanceUID] = [float(v) for v in ds.ImagePositionPatient]
    setup = json.loads(stack.manage("shell", "-c", SETUP).strip().splitlines()[-1])

    archive = _ok(stack.request("POST", "/api/pacs/archives/", {
        "name": "Orthanc", "url": orthanc.dicomweb_url, "username": orthanc.username,
        "password": orthanc.password}), 201)
    base = f"/api/pacs/archives/{archive['id']}"
    studies = _ok(stack.request("GET", f"{base}/studies/?modality=CT&date_from=2022-12-08&date_to=2022-12-08"), 200)
    assert [s["study_uid"] for s in studies] == [ids["study"]]
    series = _ok(stack.request("GET", f"{base}/series/?study_uid={ids['study']}&description=body"), 200)
    assert [(s["series_uid"], s["n_instances"], s["imported"]) for s in series] == [(ids["series"], 20, False)]

    job = _ok(stack.request("POST", f"{base}/imports/", {
        "pool": setup["pool"], "study_uid": ids["study"], "series_uids": [ids["series"]]}), 202)
    job = _wait(stack, f"/api/imports/{job['id']}/", lambda j: j["status"] in ("done", "failed"), "the import")
    assert job["status"] == "done", job["results"]
    scan_id = job["results"][0]["scan_id"]
    scan = stack.get(f"/api/scans/{scan_id}/")
    assert scan["shape"] == [20, 353, 512]  # as the same series imported by upload (test_import_real_data)

    project = setup["project"]
    seg = _ok(stack.request("POST", f"/api/projects/{project}/segmentations/", {"scan_id": scan_id}), 202)
    seg = _wait(stack, f"/api/projects/{project}/segmentations/{seg['id']}/",
                lambda s: s["status"] in ("done", "failed"), "the segmentation")
    assert seg["status"] == "done", seg
    sent = _ok(stack.request("POST", f"/api/projects/{project}/segmentations/{seg['id']}/pacs/",
                             {"archive": archive["id"]}), 201)
    assert (sent["study_uid"], sent["referenced_series_uid"]) == (ids["study"], ids["series"])

    client = DICOMwebClient(orthanc.dicomweb_url)
    client._session.auth = (orthanc.username, orthanc.password)
    found = client.search_for_series(ids["study"], search_filters={"Modality": "SEG"})
    assert [f["0020000E"]["Value"][0] for f in found] == [sent["series_uid"]]  # beside the CT, in its study
    [stored] = client.retrieve_series(ids["study"], sent["series_uid"], media_types=(("application/dicom", "*"),))
    stored = pydicom.dcmread(io.BytesIO(_bytes(stored)))
    assert stored.Modality == "SEG" and stored.SOPInstanceUID == sent["sop_instance_uid"]
    assert stored.ReferencedSeriesSequence[0].SeriesInstanceUID == ids["series"]
    frames = stored.PerFrameFunctionalGroupsSequence
    assert len(frames) > 0
    for frame in frames:
        source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, positions[source], atol=1e-3)  # the right CT slice
    # The referenced instances are the series' own (the loop above found each one's position), listed
    # once each in the SEG's references.
    listed = [i.ReferencedSOPInstanceUID for i in stored.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    assert len(listed) == len(set(listed)) == 20 and set(listed) == set(positions)


def _bytes(dataset) -> bytes:
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()
