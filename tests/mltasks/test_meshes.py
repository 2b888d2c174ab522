"""Structure meshes: closed, volume-true, in patient coordinates, written as STL/OBJ with a manifest."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import trimesh

from mltasks.errors import InvalidArray
from mltasks.geometry import Geometry
from mltasks.labels import Label, LabelSet
from mltasks.meshes import label_meshes, meshes_zip, structure_surface
from mltasks.phantom import generate_phantom

ONE = LabelSet(labels=(Label(1, "ball", "muscle", "#ff0000", "ball", ""),))


def voxel_centroid_lps(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Mean voxel centre in LPS mm, computed apart from the mesh code: through SimpleITK."""
    image = geometry.to_sitk(mask.astype(np.uint8))
    zyx = np.argwhere(mask).mean(axis=0)
    return np.array(image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in zyx[::-1])))


def sphere(radius_mm: float, geometry: Geometry, centre_index) -> np.ndarray:
    z, y, x = np.indices(geometry.shape, dtype=np.float64)
    sz, sy, sx = geometry.spacing
    cz, cy, cx = centre_index
    return ((z - cz) * sz) ** 2 + ((y - cy) * sy) ** 2 + ((x - cx) * sx) ** 2 <= radius_mm ** 2


@pytest.mark.parametrize("radius", [3.0, 6.0, 12.0])
def test_a_sphere_mesh_is_watertight_and_keeps_the_voxel_volume(radius):
    geometry = Geometry(shape=(32, 32, 32), spacing=(1.0, 1.0, 1.0))
    mask = sphere(radius, geometry, (15.3, 16.1, 15.7))
    (mesh,) = label_meshes(mask.astype(np.uint8), geometry, ONE)
    assert mesh.watertight
    assert mesh.mesh_volume_ml == pytest.approx(mesh.voxel_volume_ml, rel=0.03)
    assert mesh.voxel_volume_ml == pytest.approx(mask.sum() / 1000.0)
    # Smoothed: close to a true sphere, every vertex within a voxel of the radius.
    distances = np.linalg.norm(mesh.vertices - mesh.vertices.mean(axis=0), axis=1)
    assert np.all(np.abs(distances - radius) < 1.0)


def test_taubin_smoothing_alone_keeps_the_volume_of_a_large_sphere():
    """Before the volume offset: smoothing must not shrink it (plain Laplacian loses several per cent)."""
    geometry = Geometry(shape=(40, 40, 40), spacing=(1.0, 1.0, 1.0))
    mask = sphere(15.0, geometry, (19.5, 19.5, 19.5))
    _, _, offset = structure_surface(mask, geometry)
    assert abs(offset) < 0.05  # mm: the offset corrects corners, not smoothing


def test_an_anisotropic_oblique_grid_puts_the_mesh_where_the_voxels_are():
    """Centroid of the enclosed volume = voxel centroid in patient coordinates, within one voxel."""
    angle = np.deg2rad(20.0)
    c, s = np.cos(angle), np.sin(angle)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    geometry = Geometry(shape=(16, 40, 48), spacing=(3.0, 0.8, 0.9), origin=(-120.0, 35.5, 410.0),
                        direction=direction)
    mask = sphere(9.0, geometry, (8.0, 17.0, 30.0))
    (mesh,) = label_meshes(mask.astype(np.uint8), geometry, ONE)
    assert mesh.watertight
    assert mesh.mesh_volume_ml == pytest.approx(mesh.voxel_volume_ml, rel=0.03)
    centroid = trimesh.Trimesh(mesh.vertices, mesh.faces).center_mass
    assert np.linalg.norm(centroid - voxel_centroid_lps(mask, geometry)) < min(geometry.spacing)


def test_a_left_handed_grid_still_gives_outward_triangles():
    geometry = Geometry(shape=(20, 20, 20), spacing=(1.0, 1.0, 1.0), direction=(-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    mask = sphere(6.0, geometry, (10, 10, 10))
    (mesh,) = label_meshes(mask.astype(np.uint8), geometry, ONE)
    assert trimesh.Trimesh(mesh.vertices, mesh.faces).volume > 0


def test_ras_negates_x_and_y_and_keeps_the_winding():
    geometry = Geometry(shape=(20, 20, 20), spacing=(1.0, 1.0, 1.0), origin=(10.0, 20.0, 30.0))
    mask = sphere(6.0, geometry, (10, 10, 10))
    lps, faces_lps, _ = structure_surface(mask, geometry)
    ras, faces_ras, _ = structure_surface(mask, geometry, space="RAS")
    np.testing.assert_allclose(ras, lps * [-1, -1, 1])
    assert trimesh.Trimesh(ras, faces_ras).volume > 0


def test_a_structure_touching_the_edge_of_the_volume_is_closed():
    geometry = Geometry(shape=(10, 12, 12), spacing=(2.0, 1.0, 1.0))
    labels = np.zeros(geometry.shape, np.uint8)
    labels[:, :6, :] = 1  # cut by five faces of the volume
    (mesh,) = label_meshes(labels, geometry, ONE)
    assert mesh.watertight
    assert mesh.mesh_volume_ml == pytest.approx(mesh.voxel_volume_ml, rel=0.03)


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(7, shape=(40, 96, 96), sided=True, noise=False)


def test_every_phantom_structure_mesh_is_closed_volume_true_and_in_place(phantom):
    meshes = label_meshes(phantom.labels, phantom.geometry, phantom.label_set)
    present = [lab for lab in phantom.label_set.labels if (phantom.labels == lab.value).any()]
    assert [m.name for m in meshes] == [lab.name for lab in present]
    voxel = max(phantom.geometry.spacing)
    for mesh in meshes:
        mask = phantom.labels == mesh.value
        assert mesh.watertight, mesh.name
        assert mesh.mesh_volume_ml == pytest.approx(mesh.voxel_volume_ml, rel=0.03), mesh.name
        centroid = trimesh.Trimesh(mesh.vertices, mesh.faces).center_mass
        assert np.linalg.norm(centroid - voxel_centroid_lps(mask, phantom.geometry)) < voxel, mesh.name


def test_the_zip_holds_stl_obj_and_a_manifest_that_agree(phantom):
    meshes = label_meshes(phantom.labels, phantom.geometry, phantom.label_set)[:3]
    archive = zipfile.ZipFile(io.BytesIO(meshes_zip(meshes, about={"scan": "phantom 7"})))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["space"] == "LPS" and manifest["units"] == "mm" and manifest["scan"] == "phantom 7"
    assert [row["name"] for row in manifest["structures"]] == [m.name for m in meshes]
    csv_lines = archive.read("manifest.csv").decode().splitlines()
    assert csv_lines[0].startswith("name,value,colour,stl,obj") and len(csv_lines) == 4
    for row, mesh in zip(manifest["structures"], meshes, strict=True):
        assert row["colour"] == mesh.colour and row["watertight"] is True
        stl_bytes = archive.read(row["stl"])
        assert stl_bytes.startswith(b"SPACE=LPS")
        stl = trimesh.load(io.BytesIO(stl_bytes), file_type="stl")
        obj = trimesh.load(io.BytesIO(archive.read(row["obj"])), file_type="obj", process=False)
        for read in (stl, obj):
            assert read.is_watertight
            assert read.volume / 1000.0 == pytest.approx(row["mesh_volume_ml"], rel=1e-3)


def test_absent_structures_get_no_mesh_and_names_become_portable_file_names():
    label_set = LabelSet(labels=(Label(1, "a b/c", "muscle", "#00ff00", "a", ""),
                                 Label(2, "gone", "muscle", "#0000ff", "gone", "")))
    geometry = Geometry(shape=(8, 8, 8), spacing=(1.0, 1.0, 1.0))
    labels = np.zeros(geometry.shape, np.uint8)
    labels[2:6, 2:6, 2:6] = 1
    meshes = label_meshes(labels, geometry, label_set)
    assert [m.name for m in meshes] == ["a b/c"]
    names = zipfile.ZipFile(io.BytesIO(meshes_zip(meshes))).namelist()
    assert "001_a_b_c.stl" in names and "001_a_b_c.obj" in names


def test_it_refuses_labels_and_geometry_of_different_shapes():
    with pytest.raises(InvalidArray, match=r"labels \(4, 4, 4\) and geometry \(5, 4, 4\)"):
        label_meshes(np.ones((4, 4, 4), np.uint8), Geometry(shape=(5, 4, 4), spacing=(1.0, 1.0, 1.0)), ONE)


def test_it_refuses_an_unknown_space():
    geometry = Geometry(shape=(4, 4, 4), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="space 'XYZ': use one of LPS, RAS"):
        structure_surface(np.ones((4, 4, 4), bool), geometry, space="XYZ")


@pytest.mark.shared_data
def test_the_real_vhf_label_gives_a_closed_volume_true_mesh_in_place(shared_data):
    """A label drawn on a real cadaver CT (Visible Human Female, 1 mm voxels, 5 slices)."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(shared_data / "ct-dicom-vhf-pelvis" / "label.nii.gz"))
    geometry = Geometry.from_sitk(image)
    labels = (sitk.GetArrayFromImage(image) > 0).astype(np.uint8)
    (mesh,) = label_meshes(labels, geometry, ONE)
    assert mesh.watertight
    assert mesh.mesh_volume_ml == pytest.approx(mesh.voxel_volume_ml, rel=0.03)
    centroid = trimesh.Trimesh(mesh.vertices, mesh.faces).center_mass
    assert np.linalg.norm(centroid - voxel_centroid_lps(labels > 0, geometry)) < min(geometry.spacing)


def test_decimated_meshes_stay_closed_and_volume_true(phantom):
    full = label_meshes(phantom.labels, phantom.geometry, phantom.label_set)
    small = label_meshes(phantom.labels, phantom.geometry, phantom.label_set, max_triangles=500)
    assert [m.name for m in small] == [m.name for m in full]
    for before, after in zip(full, small, strict=True):
        assert after.watertight, after.name
        assert after.mesh_volume_ml == pytest.approx(after.voxel_volume_ml, rel=0.03), after.name
        assert len(after.faces) <= max(len(before.faces), 500)
    reduced = [m for m, f in zip(small, full, strict=True) if len(m.faces) < len(f.faces)]
    assert len(reduced) > len(full) / 2  # most had more than 500 triangles and lost some
    assert sum(len(m.faces) for m in small) < 0.5 * sum(len(m.faces) for m in full)
