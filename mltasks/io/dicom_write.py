"""Writing a CT volume as a classic DICOM series (one uncompressed file per slice).

Used by the phantom generator and by tests to make good and bad inputs. The
slice normal of DICOM is always row x column; a geometry whose z axis points
the other way reads back slice-reversed with the same physical positions.
A direction matrix whose z column is not perpendicular to the slices gives a
sheared (gantry-tilted) series on purpose.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from mltasks.errors import InvalidArray
from mltasks.geometry import Geometry


def write_dicom_series(
    hu: np.ndarray,
    geometry: Geometry,
    out_dir: str | Path,
    *,
    series_description: str = "MyoLabel CT",
    patient_id: str = "ANON",
    series_uid: str | None = None,
    study_uid: str | None = None,
    modality: str = "CT",
    manufacturer: str = "MyoLabel",
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    file_prefix: str = "slice",
) -> list[Path]:
    """Write ``hu`` (z, y, x) in HU as one DICOM file per z slice into ``out_dir``.

    Stored values are ``round((hu - rescale_intercept) / rescale_slope)`` as
    signed 16-bit; values that do not fit raise ``InvalidArray``.

    Returns:
        The written files in slice order.
    """
    if hu.shape != tuple(geometry.shape):
        raise InvalidArray(
            f"hu shape {hu.shape} does not match geometry shape {geometry.shape} (z, y, x)"
        )
    stored = np.round((np.asarray(hu, dtype=np.float64) - rescale_intercept) / rescale_slope)
    if stored.size and (stored.min() < -32768 or stored.max() > 32767):
        msg = "HU values do not fit in 16 bits with this rescale slope/intercept; choose another slope"
        raise InvalidArray(msg)
    stored = stored.astype(np.int16)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shared = {
        "series_uid": series_uid or generate_uid(),
        "study_uid": study_uid or generate_uid(),
        "frame_uid": generate_uid(),
        "series_description": series_description,
        "patient_id": patient_id,
        "modality": modality,
        "manufacturer": manufacturer,
        "slope": rescale_slope,
        "intercept": rescale_intercept,
    }
    direction = np.asarray(geometry.direction, dtype=np.float64).reshape(3, 3)
    paths = []
    for k in range(hu.shape[0]):
        position = np.asarray(geometry.origin) + direction[:, 2] * geometry.spacing[0] * k
        ds = _slice_dataset(stored[k], geometry, direction, position, k, shared)
        path = out_dir / f"{file_prefix}{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _ds(value: float) -> str:
    """A decimal string within DICOM's 16-character limit."""
    for digits in range(12, 4, -1):
        text = f"{float(value):.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{float(value):.4g}"


def _slice_dataset(
    pixels: np.ndarray,
    geometry: Geometry,
    direction: np.ndarray,
    position: np.ndarray,
    k: int,
    shared: dict,
) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = shared["modality"]
    ds.Manufacturer = shared["manufacturer"]
    ds.PatientID = shared["patient_id"]
    ds.PatientName = shared["patient_id"]
    ds.StudyInstanceUID = shared["study_uid"]
    ds.SeriesInstanceUID = shared["series_uid"]
    ds.FrameOfReferenceUID = shared["frame_uid"]
    ds.SeriesDescription = shared["series_description"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = k + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageOrientationPatient = [_ds(v) for v in (*direction[:, 0], *direction[:, 1])]
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.PixelSpacing = [_ds(geometry.spacing[1]), _ds(geometry.spacing[2])]
    ds.SliceThickness = _ds(geometry.spacing[0])
    ds.RescaleSlope = _ds(shared["slope"])
    ds.RescaleIntercept = _ds(shared["intercept"])
    ds.RescaleType = "HU"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    return ds
