"""The DICOM-SEG of a DICOM import refers to the original images, frame by frame, on the original grid."""

from __future__ import annotations

import io

import highdicom as hd
import numpy as np
import pydicom
import pytest

from backend.acquisition.outputs.export import dicom_seg_bytes
from backend.imaging import grids
from backend.imaging.models import Scan
from backend.imaging.services import scan_import_file
from backend.imaging.volumes import save_array
from mltasks.geometry import Geometry
from mltasks.io.dicom_write import write_dicom_series
from tests.backend.factories import (
    LabelSetFactory,
    PoolFactory,
    ProjectFactory,
    segmentation_with_uncertainty,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def _segmented(scan: Scan, project):
    """A finished segmentation of ``scan`` with two boxes (labels 1 and 2) on its working grid."""
    labels = np.zeros(scan.shape, np.uint8)
    _, h, w = scan.shape
    labels[:, h * 3 // 10:h * 6 // 10, w // 4:w // 2] = 1
    labels[1:, h * 6 // 10:h * 8 // 10, w * 55 // 100:w * 8 // 10] = 2
    seg = segmentation_with_uncertainty(project, scan, np.zeros(scan.shape, np.float16))
    seg.labels = save_array(labels, "acquisition/segmentations/labels.npy")
    seg.save(update_fields=["labels"])
    return seg, labels


def test_the_seg_of_a_dicom_import_refers_to_its_original_instances(tmp_path):
    # Five 2 mm slices of 64 x 64 pixels over 360 mm, the body 8 pixels from every edge: the working
    # grid keeps the five slices and the body plus 2 pixels (10 mm) on every side.
    geometry = Geometry(shape=(5, 64, 64), spacing=(2.0, 5.625, 5.625), origin=(-180.0, -180.0, 40.0))
    hu = np.full(geometry.shape, -1000, np.int16)
    hu[:, 8:56, 8:56] = 40
    paths = write_dicom_series(hu, geometry, tmp_path / "ct", series_description="hips")
    originals = sorted((pydicom.dcmread(p) for p in paths), key=lambda ds: float(ds.ImagePositionPatient[2]))
    series_uid = originals[0].SeriesInstanceUID
    pool = PoolFactory()
    project = ProjectFactory(label_set=LabelSetFactory(labels__n=2), pools=[pool])
    [result] = scan_import_file(pool=pool, path=tmp_path / "ct", name="ct")
    assert result["status"] == "imported", result
    scan = Scan.objects.get(pk=result["scan_id"])
    seg, labels = _segmented(scan, project)

    dcm = pydicom.dcmread(io.BytesIO(dicom_seg_bytes(seg)))

    assert dcm.Modality == "SEG"
    assert dcm.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    referenced = {item.ReferencedSOPInstanceUID for item in dcm.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {ds.SOPInstanceUID for ds in originals}
    assert (dcm.Rows, dcm.Columns) == (64, 64)
    frames = hd.seg.Segmentation.from_dataset(dcm).get_pixels_by_source_instance(
        source_sop_instance_uids=[ds.SOPInstanceUID for ds in originals], combine_segments=True)
    assert scan.shape == (5, 52, 52)
    expected = grids.to_original(scan, labels, labels=True)
    assert expected.shape == (5, 64, 64) and set(np.unique(expected)) == {0, 1, 2}
    np.testing.assert_array_equal(expected[:, 6:58, 6:58], labels)  # exact: the working voxels are the CT's
    np.testing.assert_array_equal(frames, expected)  # segment numbers 1, 2 = label values 1, 2 here


def test_the_seg_of_a_scan_without_dicom_originals_refers_to_a_rendering_of_the_working_grid(tmp_path):
    from tests.backend.factories import scan_with_volume

    pool = PoolFactory()
    project = ProjectFactory(label_set=LabelSetFactory(labels__n=2), pools=[pool])
    scan = scan_with_volume(pool, np.zeros((3, 512, 512), np.int16))  # a NIfTI import
    seg, _ = _segmented(scan, project)

    dcm = pydicom.dcmread(io.BytesIO(dicom_seg_bytes(seg)))

    assert (dcm.Rows, dcm.Columns) == (512, 512)
    assert len(dcm.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 3
    assert dcm.ReferencedSeriesSequence[0].SeriesInstanceUID != scan.series_uid


def test_the_seg_of_the_real_siemens_series_is_written(shared_data):
    # The shared Siemens files carry no SOP Class UID in their data set (only in the file meta) and no
    # series, study or instance UIDs: the export must still give a readable SEG, not a KeyError.
    folder = shared_data / "ct-dicom-siemens-abdomen"
    pool = PoolFactory()
    project = ProjectFactory(label_set=LabelSetFactory(labels__n=2), pools=[pool])
    [result] = scan_import_file(pool=pool, path=folder, name="siemens")
    assert result["status"] == "imported", result
    scan = Scan.objects.get(pk=result["scan_id"])
    seg, _ = _segmented(scan, project)

    dcm = pydicom.dcmread(io.BytesIO(dicom_seg_bytes(seg)))

    assert dcm.Modality == "SEG"
    assert len(dcm.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 20
    assert dcm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
