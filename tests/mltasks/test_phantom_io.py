"""Phantoms on disk: the cached data set and the command line (NIfTI and DICOM)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from mltasks.__main__ import main
from mltasks.geometry import Geometry
from mltasks.io import read_volume
from mltasks.phantom import generate_phantom, phantom_dataset


def test_dataset_generates_once_then_reuses_the_cache(tmp_path):
    first = phantom_dataset(2, size=(12, 32, 32), seed=3, cache_dir=tmp_path)
    assert len(first) == 2 and all(p.is_file() for pair in first for p in pair)
    stamps = [p.stat().st_mtime_ns for pair in first for p in pair]
    again = phantom_dataset(2, size=(12, 32, 32), seed=3, cache_dir=tmp_path)
    assert again == first
    assert [p.stat().st_mtime_ns for pair in again for p in pair] == stamps
    ct = sitk.ReadImage(str(first[1][0]))
    ph = generate_phantom(4, shape=(12, 32, 32))
    assert np.array_equal(sitk.GetArrayFromImage(ct), ph.hu)
    read = Geometry.from_sitk(ct)  # NIfTI stores float32 spacing and origin
    assert read.shape == ph.geometry.shape
    assert np.allclose(read.spacing, ph.geometry.spacing) and np.allclose(read.origin, ph.geometry.origin, atol=1e-3)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(first[1][1]))), ph.labels)


def test_command_line_writes_nifti_and_a_dicom_series_that_reads_back(tmp_path, capsys):
    status = main(["phantom", "--n", "1", "--out", str(tmp_path), "--size", "32", "32", "12",
                   "--seed", "9", "--dicom", "--calibration-phantom"])
    assert status == 0
    ph = generate_phantom(9, shape=(12, 32, 32), calibration_phantom=True)
    hu, geometry = read_volume(tmp_path / "phantom_00009_dicom")
    assert np.array_equal(hu, ph.hu)
    assert np.allclose(geometry.origin, ph.geometry.origin) and np.allclose(geometry.spacing, ph.geometry.spacing)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "phantom_00009_labels.nii.gz")))
    assert np.array_equal(labels, ph.labels)
