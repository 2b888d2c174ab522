"""Issue 17 item 1: imports store the CT's own voxels on the working grid of ``mltasks.grid``.

The acquired slices (thinned only below about 1 mm) and, in-plane, the box around
everything above -500 HU plus 10 mm: no slice is interpolated and no arm or body wall
is cropped. Label maps and exports go between the grids exactly; scans imported
before (``working_grid`` null) keep their resampled grid and its way back.
"""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from backend.imaging import grids
from backend.imaging.models import ReferenceLabelMap, Scan
from backend.imaging.services import ImportInput, scan_import_file
from backend.imaging.volumes import reference_labels, save_array, scan_volume
from mltasks.geometry import Geometry
from mltasks.grid import WorkingGrid
from mltasks.io import read_volume, write_volume
from mltasks.preprocess import to_original_grid
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    scan_with_volume,
    segmentation_with_uncertainty,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db

SIEMENS = "ct-dicom-siemens-abdomen"
VHF = "ct-dicom-vhf-pelvis"


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def _imported(path, name: str, **options) -> Scan:
    [result] = scan_import_file(pool=PoolFactory(), path=path, name=name, **options)
    assert result["status"] == "imported", result
    return Scan.objects.get(pk=result["scan_id"])


def _slice_positions(geometry: Geometry) -> np.ndarray:
    """(z, 3) LPS position of the first voxel of every slice of ``geometry``."""
    direction = np.asarray(geometry.direction, np.float64).reshape(3, 3)
    k = np.arange(geometry.shape[0], dtype=np.float64)
    return np.asarray(geometry.origin) + np.outer(k * geometry.spacing[0], direction[:, 2])


# --- the real Siemens series: arms, body wall, acquired slices -----------------------------


@pytest.mark.shared_data
def test_the_siemens_series_keeps_both_arms_and_the_body_wall(shared_data):
    scan = _imported(shared_data / SIEMENS, "abdomen")
    hu, original = read_volume(shared_data / SIEMENS)
    grid = WorkingGrid.from_dict(scan.working_grid)
    volume = np.asarray(scan_volume(scan))
    assert grid.original == original and Geometry.from_dict(scan.geometry) == grid.geometry
    np.testing.assert_array_equal(volume, hu[:, grid.rows[0]:grid.rows[1], grid.cols[0]:grid.cols[1]])
    # Every voxel denser than air is on the working grid, and no tissue lies within 2 mm of an
    # edge of the box, except where the box is the field of view itself (the arms' sides here).
    tissue = volume > -500
    assert int(tissue.sum()) == int((hu > -500).sum())
    ny, nx = original.shape[1:]
    near_y, near_x = (math.ceil(2.0 / s) for s in original.spacing[1:])
    edges = {"top": (grid.rows[0] > 0, tissue[:, :near_y]), "bottom": (grid.rows[1] < ny, tissue[:, -near_y:]),
             "left": (grid.cols[0] > 0, tissue[:, :, :near_x]), "right": (grid.cols[1] < nx, tissue[:, :, -near_x:])}
    for edge, (inside_fov, band) in edges.items():
        assert not (inside_fov and band.any()), f"tissue within 2 mm of the box's {edge} edge"
    assert grid.cols == (0, nx)  # the arms reach within 10 mm of both sides of the field of view
    assert grid.rows[0] > 0 and grid.rows[1] < ny  # air above the body and below the table is cut


@pytest.mark.shared_data
def test_the_siemens_working_slices_are_the_acquired_slices(shared_data):
    scan = _imported(shared_data / SIEMENS, "abdomen")
    working = Geometry.from_dict(scan.geometry)
    grid = WorkingGrid.from_dict(scan.working_grid)
    assert working.shape[0] == 20 and working.spacing[0] == pytest.approx(2.0)
    # From the DICOM headers: each image's position, moved to the box's first row and column.
    found = []
    for path in sorted((shared_data / SIEMENS).iterdir()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        iop = np.asarray(ds.ImageOrientationPatient, np.float64)
        row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
        found.append(np.asarray(ds.ImagePositionPatient, np.float64)
                     + iop[:3] * col_mm * grid.cols[0] + iop[3:] * row_mm * grid.rows[0])
    normal = np.asarray(working.direction).reshape(3, 3)[:, 2]
    acquired = np.array(sorted(found, key=lambda p: float(p @ normal)))
    np.testing.assert_allclose(_slice_positions(working), acquired, atol=1e-3)
    np.testing.assert_allclose(np.diff(acquired @ normal), 2.0, atol=1e-3)


# --- the VHF label map: exact voxels, and back onto the original grid through the export API --


@pytest.fixture
def vhf(shared_data):
    label_set = LabelSetFactory(labels__n=1)
    scan = _imported(shared_data / VHF / "series", "series", label_set=label_set,
                     labels=ImportInput(shared_data / VHF / "label.nii.gz", "label.nii.gz"))
    image = sitk.ReadImage(str(shared_data / VHF / "label.nii.gz"))
    assert Geometry.from_sitk(image) == Geometry.from_dict(scan.original_geometry)  # as the data's README says
    return scan, label_set, sitk.GetArrayFromImage(image)


@pytest.mark.shared_data
def test_the_vhf_label_map_lands_on_exactly_its_voxels(vhf):
    scan, _, on_file = vhf
    grid = grids.working_grid_of(scan)
    reference = ReferenceLabelMap.objects.get(scan=scan)
    stored = np.asarray(reference_labels(reference))
    np.testing.assert_array_equal(stored, on_file[:, grid.rows[0]:grid.rows[1], grid.cols[0]:grid.cols[1]])
    assert int(stored.sum()) == int(on_file.sum())  # nothing of it outside the box
    assert reference.labelled_slices == [k for k in range(grid.n_slices) if on_file[grid.z_indices[k]].any()]
    np.testing.assert_array_equal(grids.to_original(scan, stored, labels=True), on_file)


@pytest.mark.shared_data
def test_a_segmentation_exports_onto_the_original_grid_exactly(vhf, client, tmp_path):
    scan, label_set, on_file = vhf
    lead = UserFactory()
    project = ProjectFactory(label_set=label_set, pools=[scan.pool])
    MembershipFactory(user=lead, project=project, role="lead")
    grid = grids.working_grid_of(scan)
    u = np.random.default_rng(0).random(grid.shape).astype(np.float16)
    seg = segmentation_with_uncertainty(project, scan, u)
    seg.labels = save_array(np.asarray(reference_labels(ReferenceLabelMap.objects.get(scan=scan))), "seg.npy")
    seg.save(update_fields=["labels"])
    client.force_login(lead)
    base = f"/api/projects/{project.id}/segmentations/{seg.id}/"

    def download(kind: str, **query) -> sitk.Image:
        response = client.get(base + kind, query)
        assert response.status_code == 200, response.content[:300]
        (tmp_path / kind).write_bytes(response.content)
        return sitk.ReadImage(str(tmp_path / kind))

    labels = download("labels.nii.gz")
    assert Geometry.from_sitk(labels) == Geometry.from_dict(scan.original_geometry)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), on_file)
    on_ct = sitk.GetArrayFromImage(download("uncertainty.nii.gz"))
    box = (slice(None), slice(*grid.rows), slice(*grid.cols))
    np.testing.assert_array_equal(on_ct[box], u.astype(np.float32))
    assert on_ct.sum() == pytest.approx(float(u.astype(np.float64).sum()), rel=1e-6)  # 0 outside the box
    working = download("labels.nii.gz", grid="working")
    assert Geometry.from_sitk(working) == Geometry.from_dict(scan.geometry)


# --- a thin series is thinned; its labels land on the kept slices ---------------------------


# Twelve 0.5 mm slices of 40 x 40 one-millimetre pixels.
THIN = Geometry(shape=(12, 40, 40), spacing=(0.5, 1.0, 1.0), origin=(-20.0, -20.0, 100.0))


def _thin_series(tmp_path) -> tuple[ImportInput, ImportInput, np.ndarray, np.ndarray]:
    """A body in the middle of ``THIN``, air around it, and labels on kept and dropped slices."""
    geometry = THIN
    hu = np.full(geometry.shape, -1000, np.int16)
    hu[:, 12:28, 10:30] = np.random.default_rng(3).integers(-100, 200, (12, 16, 20))
    labels = np.zeros(geometry.shape, np.uint8)
    labels[2:8, 14:20, 12:18] = 1  # slices 2-7: half of them are dropped by thinning
    labels[3, 22:25, 20:24] = 2  # only on slice 3, which is dropped
    ct = ImportInput(write_volume(hu, geometry, tmp_path / "thin.nii.gz"), "thin.nii.gz")
    label_map = ImportInput(write_volume(labels, geometry, tmp_path / "labels.nii.gz"), "labels.nii.gz")
    return ct, label_map, hu, labels


def test_a_half_millimetre_series_is_thinned_and_its_labels_land_on_kept_slices(tmp_path):
    ct, label_map, hu, labels = _thin_series(tmp_path)
    pool = PoolFactory()
    [result] = scan_import_file(pool=pool, path=ct.path, name=ct.name, labels=label_map,
                                label_set=LabelSetFactory(labels__n=2))
    assert result["status"] == "imported", result
    scan = Scan.objects.get(pk=result["scan_id"])
    grid = grids.working_grid_of(scan)
    assert grid.z_indices.tolist() == [0, 2, 4, 6, 8, 10]
    working = Geometry.from_dict(scan.geometry)
    assert working.spacing[0] == pytest.approx(1.0)
    np.testing.assert_allclose(_slice_positions(working)[:, 2], 100.0 + 0.5 * grid.z_indices)
    np.testing.assert_array_equal(scan_volume(scan), hu[::2, slice(*grid.rows), slice(*grid.cols)])
    reference = ReferenceLabelMap.objects.get(scan=scan)
    np.testing.assert_array_equal(reference_labels(reference), labels[::2, slice(*grid.rows), slice(*grid.cols)])
    assert reference.labelled_slices == [1, 2, 3]  # acquired slices 2, 4 and 6
    # The labels of the dropped slices 3, 5 and 7 are reported as left out, with why.
    assert result["labels_outside"] == {"voxels": 3 * 36 + 12, "labels": [{"value": 1, "voxels": 108},
                                                                          {"value": 2, "voxels": 12}]}
    assert "one acquired slice in 2, thinning the 0.5 mm slices to 1 mm" in result["warning"]
    # Exported onto the original grid: the kept slices exactly, a dropped slice as its nearest kept one.
    back = grids.to_original(scan, np.asarray(reference_labels(reference)), labels=True)
    np.testing.assert_array_equal(back[::2], labels[::2])
    np.testing.assert_array_equal(back[3], labels[2])


def test_a_label_map_only_on_dropped_slices_is_refused(tmp_path):
    ct, _, _, labels = _thin_series(tmp_path)
    only_dropped = np.where(np.arange(12)[:, None, None] % 2 == 1, labels, 0).astype(np.uint8)
    path = write_volume(only_dropped, THIN, tmp_path / "odd.nii.gz")
    [result] = scan_import_file(pool=PoolFactory(), path=ct.path, name=ct.name, label_set=LabelSetFactory(labels__n=2),
                                labels=ImportInput(path, "odd.nii.gz"))
    assert result["status"] == "failed"
    assert result["error"].startswith("odd.nii.gz: no labelled voxel lies on the working grid (one acquired slice in 2")
    assert not Scan.objects.exists()


def test_a_ct_without_tissue_fails_with_a_message(tmp_path):
    geometry = Geometry(shape=(3, 8, 8), spacing=(2.0, 1.0, 1.0))
    path = write_volume(np.full(geometry.shape, -1000, np.int16), geometry, tmp_path / "air.nii.gz")
    [result] = scan_import_file(pool=PoolFactory(), path=path, name="air.nii.gz")
    assert result["status"] == "failed"
    assert result["error"].startswith("air.nii.gz: no voxel lies above -500 HU")
    assert not Scan.objects.exists()


# --- a scan imported before working grids were stored -------------------------------------


def test_a_legacy_scan_goes_back_by_resampling(tmp_path):
    # Stored on a 512 x 512 working grid; the CT as imported had twice the in-plane resolution.
    working = Geometry(shape=(3, 512, 512), spacing=(1.0, 360 / 512, 360 / 512), origin=(-180.0, -180.0, 0.0))
    original = Geometry(shape=(3, 1024, 1024), spacing=(1.0, 180 / 512, 180 / 512), origin=(-180.0, -180.0, 0.0))
    scan = scan_with_volume(PoolFactory(), np.zeros(working.shape, np.int16), geometry=working)
    scan.original_geometry = original.to_dict()
    scan.save(update_fields=["original_geometry"])
    assert scan.working_grid is None and grids.working_grid_of(scan) is None
    labels = np.zeros(working.shape, np.uint8)
    labels[:, 100:200, 150:300] = 1
    u = np.linspace(0, 1, labels.size, dtype=np.float32).reshape(labels.shape)

    back = grids.to_original(scan, labels, labels=True)
    np.testing.assert_array_equal(back, to_original_grid(labels, working, original, interpolation="nearest"))
    np.testing.assert_array_equal(back[:, ::2, ::2], labels)
    floats = grids.to_original(scan, u, labels=False)
    np.testing.assert_array_equal(floats, to_original_grid(u, working, original, interpolation="linear"))

    from backend.acquisition.outputs.segmentation import segmentation_nifti

    project = ProjectFactory(label_set=LabelSetFactory(labels__n=1), pools=[scan.pool])
    seg = segmentation_with_uncertainty(project, scan, u)
    seg.labels = save_array(labels, "seg.npy")
    seg.save(update_fields=["labels"])
    (tmp_path / "legacy.nii.gz").write_bytes(segmentation_nifti(seg, labels=True, original_grid=True))
    image = sitk.ReadImage(str(tmp_path / "legacy.nii.gz"))
    assert Geometry.from_sitk(image) == original
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), back)
