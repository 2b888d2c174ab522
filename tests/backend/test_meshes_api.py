"""Mesh downloads and the viewer's meshes of a finished segmentation: content, access, bad input."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np
import pytest
import trimesh
from rest_framework.test import APIClient

from backend.acquisition.models import Segmentation
from tests.backend.biomech_world import GEOMETRY, client, url, volumes, world
from tests.backend.factories import use_tmp_storage

pytestmark = pytest.mark.django_db


@pytest.fixture
def w(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)
    return world()


def voxel_centroid(mask: np.ndarray) -> np.ndarray:
    """Mean voxel centre in LPS mm on GEOMETRY (identity direction): origin + index * spacing."""
    zyx = np.argwhere(mask).mean(axis=0)
    return np.asarray(GEOMETRY.origin) + zyx[::-1] * np.asarray(GEOMETRY.spacing[::-1])


def test_the_zip_has_a_closed_mesh_per_structure_in_patient_coordinates(w):
    response = client(w["annotator"]).get(url(w["seg"], "meshes.zip"))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert f'segmentation-{w["seg"].id}-scan-{w["seg"].scan_id}-meshes-LPS.zip' in response["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["space"] == "LPS" and manifest["patient_id"] == "PAT-0042"
    assert [(s["name"], s["colour"]) for s in manifest["structures"]] == [
        ("psoas_left", "#ff0000"), ("psoas_right", "#00ff00"), ("femur", "#ffff00")]
    labels, _ = volumes()
    for row in manifest["structures"]:
        mesh = trimesh.load(io.BytesIO(archive.read(row["stl"])), file_type="stl")
        mask = labels == row["value"]
        assert mesh.is_watertight
        assert row["voxel_volume_ml"] == pytest.approx(mask.sum() * np.prod(GEOMETRY.spacing) / 1000, rel=1e-4)
        assert mesh.volume / 1000 == pytest.approx(row["voxel_volume_ml"], rel=0.03)
        assert np.linalg.norm(mesh.center_mass - voxel_centroid(mask)) < min(GEOMETRY.spacing)


def test_ras_negates_x_and_y(w):
    lps = zipfile.ZipFile(io.BytesIO(client(w["lead"]).get(url(w["seg"], "meshes.zip")).content))
    ras = zipfile.ZipFile(io.BytesIO(client(w["lead"]).get(url(w["seg"], "meshes.zip") + "?space=RAS").content))
    assert json.loads(ras.read("manifest.json"))["space"] == "RAS"
    a = trimesh.load(io.BytesIO(lps.read("003_femur.stl")), file_type="stl")
    b = trimesh.load(io.BytesIO(ras.read("003_femur.stl")), file_type="stl")
    np.testing.assert_allclose(b.center_mass, a.center_mass * [-1, -1, 1], atol=1e-3)


def test_an_unknown_space_is_refused_with_the_choices(w):
    response = client(w["lead"]).get(url(w["seg"], "meshes.zip") + "?space=XYZ")
    assert response.status_code == 400
    assert response.json()["detail"] == 'space: "XYZ" is not a coordinate system: use LPS or RAS.'


def test_the_viewer_meshes_decode_to_the_structures(w):
    response = client(w["annotator"]).get(url(w["seg"], "meshes/"))
    assert response.status_code == 200
    body = response.json()
    assert body["space"] == "LPS" and body["stride"] == [1, 1, 1]
    assert [s["name"] for s in body["structures"]] == ["psoas_left", "psoas_right", "femur"]
    for s in body["structures"]:
        positions = np.frombuffer(base64.b64decode(s["positions"]), "<f4").reshape(-1, 3)
        indices = np.frombuffer(base64.b64decode(s["indices"]), "<u4").reshape(-1, 3)
        assert len(indices) == s["triangles"] and indices.max() < len(positions)
        assert trimesh.Trimesh(positions, indices).is_watertight


def test_a_large_scan_is_meshed_for_the_viewer_on_a_thinned_label_map(w, monkeypatch):
    from backend.acquisition.outputs import meshes

    monkeypatch.setattr(meshes, "VIEW_MAX_VOXELS", 16)  # the 24 x 32 grid is then taken every 2 voxels in-plane
    body = client(w["lead"]).get(url(w["seg"], "meshes/")).json()
    assert body["stride"] == [1, 2, 2]
    labels, _ = volumes()
    for s in body["structures"]:  # volumes stay those of the full-resolution voxels
        assert s["volume_ml"] == pytest.approx((labels == s["value"]).sum() * np.prod(GEOMETRY.spacing) / 1000)


def test_non_members_get_404_and_unfinished_segmentations_409(w):
    assert client(w["outsider"]).get(url(w["seg"], "meshes.zip")).status_code == 404
    assert client(w["outsider"]).get(url(w["seg"], "meshes/")).status_code == 404
    assert APIClient().get(url(w["seg"], "meshes/")).status_code in (401, 403)
    Segmentation.objects.filter(pk=w["seg"].pk).update(status=Segmentation.Status.RUNNING)
    response = client(w["lead"]).get(url(w["seg"], "meshes.zip"))
    assert response.status_code == 409 and response.json()["code"] == "not_done"
    assert "is running; its outputs exist once it is done" in response.json()["detail"]


def test_max_triangles_decimates_each_structure_and_the_zip_is_cached(w, settings):
    full = json.loads(zipfile.ZipFile(io.BytesIO(
        client(w["lead"]).get(url(w["seg"], "meshes.zip") + "?max_triangles=0").content)).read("manifest.json"))
    small = json.loads(zipfile.ZipFile(io.BytesIO(
        client(w["lead"]).get(url(w["seg"], "meshes.zip") + "?max_triangles=200").content)).read("manifest.json"))
    assert small["max_triangles"] == 200 and full["max_triangles"] is None
    for a, b in zip(full["structures"], small["structures"], strict=True):
        assert b["watertight"] and abs(b["volume_difference_percent"]) < 3
        # Decimated when it had more (the 4 x 4 x 4 femur has fewer: kept as it is).
        assert b["triangles"] < a["triangles"] if a["triangles"] > 200 else b["triangles"] == a["triangles"]
    assert sum(b["triangles"] < a["triangles"] for a, b in zip(full["structures"], small["structures"],
                                                               strict=True)) == 2
    cached = sorted(p.name for p in (settings.MYOLABEL_CACHE_DIR / "meshes").iterdir())
    assert len(cached) == 2 and all(name.startswith(f"seg-{w['seg'].id}-") for name in cached)


@pytest.mark.parametrize(("query", "message"), [
    ("max_triangles=-1", "max_triangles: Ensure this value is greater than or equal to 0."),
    ("max_triangles=many", "max_triangles: A valid integer is required."),
])
def test_a_bad_triangle_count_is_refused(w, query, message, settings):
    response = client(w["lead"]).get(url(w["seg"], "meshes.zip") + "?" + query)
    assert response.status_code == 400 and response.json()["detail"] == message
    assert not (settings.MYOLABEL_CACHE_DIR / "meshes").exists()
