"""Every kind of bad input raises its own exception with a message naming the file and the fix."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest

from mltasks.errors import (
    CorruptImage,
    EmptyLabelMap,
    GantryTilt,
    InvalidLabelMap,
    IrregularSlices,
    LabelMapOutsideImage,
    MyoLabelError,
    NotAnImage,
    NotCT,
    SeriesNotFound,
    SeveralSeries,
    UnsupportedImage,
)
from mltasks.geometry import Geometry
from mltasks.io import read_label_onto, read_volume, write_dicom_series, write_volume

GEOMETRY = Geometry(shape=(6, 16, 18), spacing=(2.0, 0.9, 0.9), origin=(-8.0, -7.0, 100.0))


def ct() -> np.ndarray:
    return np.random.default_rng(1).integers(-1000, 1000, size=GEOMETRY.shape).astype(np.int16)


def test_every_error_is_a_myolabel_error():
    for cls in (
        NotAnImage,
        CorruptImage,
        SeveralSeries,
        NotCT,
        GantryTilt,
        IrregularSlices,
        SeriesNotFound,
    ):
        assert issubclass(cls, UnsupportedImage)
    for cls in (EmptyLabelMap, LabelMapOutsideImage):
        assert issubclass(cls, InvalidLabelMap) and issubclass(cls, MyoLabelError)


def test_a_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("patient notes, not a CT\n")
    with pytest.raises(NotAnImage, match=r"notes\.txt: not an image file .*DICOM .*NIfTI"):
        read_volume(path)


def test_a_text_file_named_like_nifti_is_not_an_image(tmp_path):
    path = tmp_path / "fake.nii.gz"
    path.write_text("hello")
    with pytest.raises(NotAnImage, match=r"fake\.nii\.gz"):
        read_volume(path)


def test_an_empty_file_and_a_missing_path_are_reported(tmp_path):
    (tmp_path / "empty.nrrd").write_bytes(b"")
    with pytest.raises(NotAnImage, match="empty"):
        read_volume(tmp_path / "empty.nrrd")
    with pytest.raises(NotAnImage, match="no such file"):
        read_volume(tmp_path / "absent.mha")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_a_truncated_file_is_reported_as_truncated(tmp_path, suffix):
    path = write_volume(ct(), GEOMETRY, tmp_path / f"ct{suffix}", compress=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(
        CorruptImage, match=re.escape(f"ct{suffix}: ") + ".*(truncated|damaged).*upload"
    ):
        read_volume(path)


def test_a_complete_nifti_gz_with_a_multi_member_stream_still_reads(tmp_path):
    path = write_volume(ct(), GEOMETRY, tmp_path / "ct.nii")
    data = path.read_bytes()
    # Two gzip members: the trailer no longer gives the total size, the stream check must run.
    (tmp_path / "two.nii.gz").write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    back, _ = read_volume(tmp_path / "two.nii.gz")
    np.testing.assert_array_equal(back, ct())


def test_an_mhd_without_its_raw_file(tmp_path):
    path = write_volume(ct(), GEOMETRY, tmp_path / "ct.mhd", compress=False)
    (tmp_path / "ct.raw").unlink()
    with pytest.raises(CorruptImage, match=r"ct\.mhd: .*needs its \.raw"):
        read_volume(path)


def test_a_truncated_dicom_slice_is_reported_by_name(tmp_path):
    files = write_dicom_series(ct(), GEOMETRY, tmp_path / "s")
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) - 200])
    with pytest.raises(CorruptImage, match=rf"{files[2].name}: .*cannot be decoded"):
        read_volume(tmp_path / "s")


def test_a_folder_without_dicom_is_not_an_image(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(NotAnImage, match="no DICOM image found"):
        read_volume(tmp_path)


def test_two_series_without_a_choice_are_listed(tmp_path):
    write_dicom_series(
        ct(), GEOMETRY, tmp_path, series_uid="1.2.840.1", series_description="soft", file_prefix="a"
    )
    write_dicom_series(
        ct()[:4],
        Geometry(shape=(4, 16, 18), spacing=(2.0, 0.9, 0.9)),
        tmp_path,
        series_uid="1.2.840.2",
        series_description="bone",
        file_prefix="b",
    )
    with pytest.raises(
        SeveralSeries, match=r"holds 2 DICOM series .*1\.2\.840\.1 'soft' \(6 slices.*choose one"
    ) as info:
        read_volume(tmp_path)
    series = {s.series_instance_uid: (s.series_description, s.n_slices) for s in info.value.series}
    assert series == {"1.2.840.1": ("soft", 6), "1.2.840.2": ("bone", 4)}
    hu, geometry = read_volume(tmp_path, series_uid="1.2.840.2")
    assert geometry.shape == (4, 16, 18)
    with pytest.raises(
        SeriesNotFound, match=r"series 9\.9 not found; the series present are: .*1\.2\.840\.1"
    ):
        read_volume(tmp_path, series_uid="9.9")


def test_an_mr_series_is_refused(tmp_path):
    write_dicom_series(ct(), GEOMETRY, tmp_path, modality="MR")
    with pytest.raises(NotCT, match=r"modality MR, not CT; MyoLabel segments CT only"):
        read_volume(tmp_path)


def test_a_gantry_tilted_series_is_refused(tmp_path):
    tilt = np.radians(15.0)
    sheared = (
        1.0,
        0.0,
        0.0,
        0.0,
        1.0,
        np.sin(tilt),
        0.0,
        0.0,
        np.cos(tilt),
    )  # z column leans towards y
    geometry = Geometry(shape=GEOMETRY.shape, spacing=GEOMETRY.spacing, direction=sheared)
    files = write_dicom_series(ct(), geometry, tmp_path)
    with pytest.raises(GantryTilt, match=r"gantry tilt of 15\.0 deg; reformat"):
        read_volume(tmp_path)
    # The GantryDetectorTilt tag, when present, is quoted in the message.
    import pydicom

    for path in files:
        ds = pydicom.dcmread(path)
        ds.GantryDetectorTilt = 15
        ds.save_as(path)
    with pytest.raises(GantryTilt, match=r"GantryDetectorTilt tag: 15\.0 deg"):
        read_volume(tmp_path)


def test_a_tilt_folded_into_the_orientation_is_a_valid_oblique_grid(tmp_path):
    # Some scanners write the tilted plane in ImageOrientationPatient with positions along
    # its normal: no shear, so the series reads although GantryDetectorTilt is set.
    import pydicom

    tilt = np.radians(15.0)
    oblique = (1.0, 0.0, 0.0, 0.0, np.cos(tilt), np.sin(tilt), 0.0, -np.sin(tilt), np.cos(tilt))
    geometry = Geometry(shape=GEOMETRY.shape, spacing=GEOMETRY.spacing, direction=oblique)
    for path in write_dicom_series(ct(), geometry, tmp_path):
        ds = pydicom.dcmread(path)
        ds.GantryDetectorTilt = 15
        ds.save_as(path)
    hu, back = read_volume(tmp_path)
    np.testing.assert_array_equal(hu, ct())
    assert back.direction == pytest.approx(oblique, abs=1e-6)


def test_a_small_tilt_within_tolerance_reads(tmp_path):
    tilt = np.radians(0.2)
    geometry = Geometry(
        shape=GEOMETRY.shape,
        spacing=(2.0, 0.9, 0.9),
        direction=(1, 0, 0, 0, 1, np.sin(tilt), 0, 0, np.cos(tilt)),
    )
    write_dicom_series(ct(), geometry, tmp_path)
    hu, _ = read_volume(tmp_path)
    assert hu.shape == GEOMETRY.shape


def test_a_series_with_a_missing_slice_is_refused(tmp_path):
    files = write_dicom_series(ct(), GEOMETRY, tmp_path)
    files[3].unlink()
    with pytest.raises(
        IrregularSlices,
        match=r"uneven slice spacing \(usual interval 2\.00 mm; about 1 slice\(s\) missing between 104\.00 and 108\.00 mm\).*re-export",
    ):
        read_volume(tmp_path)


def test_duplicate_slice_positions_are_refused(tmp_path):
    write_dicom_series(ct(), GEOMETRY, tmp_path, series_uid="1.2.5", file_prefix="a")
    write_dicom_series(ct(), GEOMETRY, tmp_path, series_uid="1.2.5", file_prefix="b")
    with pytest.raises(IrregularSlices, match="share the position .* several acquisitions"):
        read_volume(tmp_path)
    one = Geometry(shape=(1, 16, 18), spacing=(2.0, 0.9, 0.9))
    write_dicom_series(ct()[:1], one, tmp_path / "two", series_uid="1.2.6", file_prefix="a")
    write_dicom_series(ct()[:1], one, tmp_path / "two", series_uid="1.2.6", file_prefix="b")
    with pytest.raises(IrregularSlices, match="share the position"):
        read_volume(tmp_path / "two")


def test_an_all_zero_label_map_is_refused(tmp_path):
    path = write_volume(np.zeros(GEOMETRY.shape, np.uint8), GEOMETRY, tmp_path / "labels.nii.gz")
    with pytest.raises(EmptyLabelMap, match=r"labels\.nii\.gz: the label map is empty"):
        read_label_onto(path, GEOMETRY)


def test_a_label_map_far_from_the_ct_is_refused(tmp_path):
    labels = np.ones(GEOMETRY.shape, np.uint8)
    far = Geometry(shape=GEOMETRY.shape, spacing=GEOMETRY.spacing, origin=(500.0, 500.0, -900.0))
    path = write_volume(labels, far, tmp_path / "labels.mha")
    with pytest.raises(
        LabelMapOutsideImage,
        match=r"labels\.mha: no labelled voxel .* inside the CT \(labels span x 500\.\.515, y 500\.\.514, z -900\.\.-890.*belongs to this CT",
    ):
        read_label_onto(path, GEOMETRY)


def test_a_fractional_label_map_is_refused(tmp_path):
    path = write_volume(np.full(GEOMETRY.shape, 0.5, np.float32), GEOMETRY, tmp_path / "prob.nrrd")
    with pytest.raises(InvalidLabelMap, match="fractional values"):
        read_label_onto(path, GEOMETRY)


def test_a_2d_image_is_not_a_volume(tmp_path):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkUInt8), str(tmp_path / "slice.png"))
    with pytest.raises(NotAnImage, match=r"slice\.png: is a 2D image .* single 3D volume"):
        read_volume(tmp_path / "slice.png")
