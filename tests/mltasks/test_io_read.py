"""Reading real DICOM series and label maps, and write/read round trips keeping geometry."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from mltasks.geometry import Geometry
from mltasks.io import (
    dicom_identifiers,
    list_dicom_series,
    read_label_onto,
    read_volume,
    write_dicom_series,
    write_volume,
)

OBLIQUE = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # x/y swapped, z flipped: left-handed


def small_ct(shape=(6, 20, 24), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-1024, 1500, size=shape).astype(np.int16)


@pytest.fixture(scope="module")
def siemens(shared_data):
    """(folder, hu, geometry) of the Siemens abdomen series, read once (JPEG 2000 decoding is slow)."""
    folder = shared_data / "ct-dicom-siemens-abdomen"
    return (folder, *read_volume(folder))


@pytest.mark.shared_data
def test_it_reads_the_siemens_series_with_its_geometry_and_rescale(siemens):
    folder, hu, geometry = siemens
    assert hu.dtype == np.int16 and hu.shape == (20, 512, 512)
    assert geometry.shape == (20, 512, 512)
    assert geometry.spacing == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert geometry.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    # Files run from z=-766.5 down to -804.5; sorted along the normal the origin is the lowest slice.
    assert geometry.origin == pytest.approx((-249.51171875, -437.51171875, -804.5))
    raw = pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
    assert float(raw.RescaleIntercept) == -1024
    air = hu[hu < -900]
    assert np.median(air) == pytest.approx(-1000, abs=30)  # rescale applied: air near -1000 HU
    soft = hu[(hu > -100) & (hu < 300)]
    assert soft.size > 100_000


@pytest.mark.shared_data
def test_slices_are_ordered_by_position_not_file_name(siemens):
    folder, hu, _ = siemens
    by_z = {}
    for path in folder.iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        by_z[float(ds.ImagePositionPatient[2])] = path
    lowest = sitk.GetArrayFromImage(sitk.ReadImage(str(by_z[min(by_z)])))[0]
    highest = sitk.GetArrayFromImage(sitk.ReadImage(str(by_z[max(by_z)])))[0]
    np.testing.assert_array_equal(hu[0], lowest)
    np.testing.assert_array_equal(hu[-1], highest)


@pytest.mark.shared_data
def test_it_reads_the_vhf_series_and_its_label_lands_on_its_voxels(shared_data):
    base = shared_data / "ct-dicom-vhf-pelvis"
    hu, geometry = read_volume(base / "series")
    assert hu.shape == (5, 512, 512)
    assert geometry.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert geometry.origin == pytest.approx((0.0, 0.0, 999.0))
    labels = read_label_onto(base / "label.nii.gz", geometry)
    direct = sitk.GetArrayFromImage(sitk.ReadImage(str(base / "label.nii.gz")))
    assert np.issubdtype(labels.dtype, np.integer)
    np.testing.assert_array_equal(labels, direct)
    assert labels.sum() == 5297
    assert -100 < np.median(hu[labels > 0]) < 100  # soft tissue, not air or bone


@pytest.mark.shared_data
def test_series_listing_and_identifiers(shared_data):
    infos = list_dicom_series(shared_data / "ct-dicom-vhf-pelvis" / "series")
    assert len(infos) == 1
    info = infos[0]
    assert info.n_slices == 5 and info.modality == "CT" and info.manufacturer == "GDCM"
    assert (
        info.series_instance_uid
        == "1.2.826.0.1.3680043.2.1125.1.75064541463040.2005072610384286453"
    )
    ids = dicom_identifiers(shared_data / "ct-dicom-siemens-abdomen")
    assert ids["Manufacturer"] == "SIEMENS" and ids["Modality"] == "CT"
    assert ids["SeriesDescription"] == "CT Body 3.0"
    assert set(ids) == {
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "Manufacturer",
        "SeriesDescription",
    }


def test_a_label_map_on_another_grid_lands_by_physical_position(tmp_path):
    ct = Geometry(shape=(10, 12, 14), spacing=(2.0, 1.0, 1.0), origin=(-7.0, -6.0, 0.0))
    truth = np.zeros(ct.shape, np.uint8)
    truth[3:7, 4:9, 2:11] = 3
    truth[5, 6, 12] = 7
    # Same physical labels on a grid with flipped axes and half the spacing, written to file.
    fine = Geometry(
        shape=(40, 28, 24),
        spacing=(0.5, 0.5, 0.5),
        origin=(8.25, 6.25, 19.75),
        direction=(0.0, -1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
    )
    from mltasks.preprocess import resample_labels_to_network

    written = write_volume(
        resample_labels_to_network(truth, ct, fine), fine, tmp_path / "labels.nrrd"
    )
    placed = read_label_onto(written, ct)
    np.testing.assert_array_equal(placed, truth)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".mhd", ".nrrd"])
def test_written_files_read_back_with_geometry_and_values(tmp_path, suffix):
    hu = small_ct()
    geometry = Geometry(
        shape=hu.shape, spacing=(2.5, 0.8, 0.7), origin=(-10.0, 20.0, 30.5), direction=OBLIQUE
    )
    path = write_volume(hu, geometry, tmp_path / f"ct{suffix}")
    back, back_geometry = read_volume(path)
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, hu)
    assert back_geometry.shape == geometry.shape
    assert back_geometry.spacing == pytest.approx(geometry.spacing, abs=1e-5)
    assert back_geometry.origin == pytest.approx(geometry.origin, abs=1e-4)
    assert back_geometry.direction == pytest.approx(geometry.direction, abs=1e-5)


def test_float_volumes_stay_float32(tmp_path):
    values = np.linspace(-1000, 1000, 6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4) + 0.25
    geometry = Geometry(shape=values.shape, spacing=(1.0, 1.0, 1.0))
    back, _ = read_volume(write_volume(values, geometry, tmp_path / "p.mha"))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, values)


def test_dicom_series_round_trip_keeps_geometry_values_and_identifiers(tmp_path):
    hu = small_ct()
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    rotated = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)  # right-handed: z is row x column
    geometry = Geometry(
        shape=hu.shape, spacing=(1.25, 0.75, 0.8), origin=(-100.0, -50.5, 12.0), direction=rotated
    )
    write_dicom_series(
        hu,
        geometry,
        tmp_path / "s",
        series_description="round trip",
        patient_id="P7",
        series_uid="1.2.3.4",
        study_uid="1.2.3",
    )
    back, back_geometry = read_volume(tmp_path / "s")
    np.testing.assert_array_equal(back, hu)
    assert back_geometry.spacing == pytest.approx(geometry.spacing, abs=1e-6)
    assert back_geometry.origin == pytest.approx(geometry.origin, abs=1e-6)
    assert back_geometry.direction == pytest.approx(geometry.direction, abs=1e-6)
    ids = dicom_identifiers(tmp_path / "s")
    assert ids == {
        "PatientID": "P7",
        "StudyInstanceUID": "1.2.3",
        "SeriesInstanceUID": "1.2.3.4",
        "Modality": "CT",
        "Manufacturer": "MyoLabel",
        "SeriesDescription": "round trip",
    }


def test_a_left_handed_geometry_reads_back_slice_reversed_at_the_same_places(tmp_path):
    hu = small_ct()
    geometry = Geometry(
        shape=hu.shape,
        spacing=(2.0, 1.0, 1.0),
        origin=(0.0, 0.0, 10.0),
        direction=(1, 0, 0, 0, 1, 0, 0, 0, -1),
    )
    write_dicom_series(hu, geometry, tmp_path / "s")
    back, back_geometry = read_volume(tmp_path / "s")
    np.testing.assert_array_equal(back, hu[::-1])
    assert back_geometry.origin == pytest.approx((0.0, 0.0, 0.0))
    assert back_geometry.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_non_integer_rescale_gives_float32_hu(tmp_path):
    hu = np.full((3, 4, 5), -500.0)
    hu[1] = 12.5
    geometry = Geometry(shape=hu.shape, spacing=(1.0, 1.0, 1.0))
    write_dicom_series(hu, geometry, tmp_path / "s", rescale_slope=0.5, rescale_intercept=-1024.0)
    back, _ = read_volume(tmp_path / "s")
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, hu)


def test_a_zip_and_a_chosen_series_read_like_the_folder(tmp_path):
    import zipfile

    hu = small_ct()
    geometry = Geometry(shape=hu.shape, spacing=(1.0, 1.0, 1.0))
    write_dicom_series(hu, geometry, tmp_path / "a", series_uid="1.2.3.1")
    write_dicom_series(hu[:, ::-1].copy(), geometry, tmp_path / "b", series_uid="1.2.3.2")
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((tmp_path / "a").iterdir()) + sorted((tmp_path / "b").iterdir()):
            zf.write(path, f"study/{path.parent.name}/{path.name}")
    back, _ = read_volume(archive, series_uid="1.2.3.2")
    np.testing.assert_array_equal(back, hu[:, ::-1])
    assert sorted(i.series_instance_uid for i in list_dicom_series(archive)) == [
        "1.2.3.1",
        "1.2.3.2",
    ]
    assert all(i.files == () for i in list_dicom_series(archive))


def test_a_single_dicom_file_reads_as_a_one_slice_volume(tmp_path):
    hu = small_ct(shape=(3, 10, 12))
    geometry = Geometry(shape=hu.shape, spacing=(2.5, 0.5, 0.5), origin=(1.0, 2.0, 3.0))
    files = write_dicom_series(hu, geometry, tmp_path)
    one, one_geometry = read_volume(files[1])
    np.testing.assert_array_equal(one, hu[1:2])
    assert one_geometry.spacing == pytest.approx((2.5, 0.5, 0.5))  # from SliceThickness
    assert one_geometry.origin == pytest.approx((1.0, 2.0, 5.5))


@pytest.mark.shared_data
def test_the_vhf_label_rewritten_flipped_lands_back_on_the_same_voxels(shared_data, tmp_path):
    base = shared_data / "ct-dicom-vhf-pelvis"
    _, geometry = read_volume(base / "series")
    labels = read_label_onto(base / "label.nii.gz", geometry)
    # Same physical voxels stored with x and z reversed: direction cosines -1 and the far corner as origin.
    flipped = Geometry(
        shape=geometry.shape,
        spacing=geometry.spacing,
        origin=(511.0, 0.0, 1003.0),
        direction=(-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
    )
    path = write_volume(labels[::-1, :, ::-1].copy(), flipped, tmp_path / "flipped.nii.gz")
    np.testing.assert_array_equal(read_label_onto(path, geometry), labels)
