"""Exports: label maps as NIfTI and DICOM-SEG, the per-muscle report as CSV, the training set
with every pixel's provenance. The NIfTI and CSV builders write what they are given on the
scan's working grid (its stored geometry, which keeps the CT's physical position and
orientation); the segmentation NIfTI downloads go back onto the original CT grid first
(``backend.imaging.grids``), and the DICOM-SEG of a DICOM import refers to its original images.
"""

from __future__ import annotations

import csv
import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from backend.acquisition import codec, ml_adapter
from backend.acquisition.models import Segmentation, TrainingSlice
from backend.imaging import grids

REPORT_COLUMNS = ["name", "value", "voxels", "volume_ml", "mean_hu", "psv", "predicted_dice"]
# Provenance codes of the exported map.
NOT_IN_TRAINING_SET, PREDICTED, ANSWERED = 0, 1, 2


def nifti_bytes(array: np.ndarray, geometry: dict) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = ml_adapter.write_nifti(array, geometry, Path(tmp) / "volume.nii.gz")
        return path.read_bytes()


def load_npy(field) -> np.ndarray:
    with field.open("rb") as fh:
        return np.load(io.BytesIO(fh.read()))


def report_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in REPORT_COLUMNS})
    return out.getvalue()


def training_set_zip(project) -> bytes:
    """Per scan: labels (uint8, 255 = unlabelled) and provenance (0 none, 1 predicted, 2 answered) as NIfTI,
    plus slices.csv listing every training slice with its source, pixel counts and the state of the step
    it was answered in ("cancelled": an answer kept from a step cancelled afterwards)."""
    buffer = io.BytesIO()
    rows = (TrainingSlice.objects.filter(project=project).select_related("scan", "step")
            .order_by("scan_id", "z"))
    by_scan: dict[int, list[TrainingSlice]] = {}
    for row in rows:
        by_scan.setdefault(row.scan_id, []).append(row)
    listing = io.StringIO()
    writer = csv.writer(listing, lineterminator="\n")
    writer.writerow(["scan", "scan_name", "z", "source", "step", "query", "answered_pixels", "predicted_pixels",
                     "step_state"])
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for scan_id, slices in by_scan.items():
            scan = slices[0].scan
            labels = np.full(scan.shape, 255, np.uint8)
            provenance = np.zeros(scan.shape, np.uint8)
            for s in slices:
                shape = (s.height, s.width)
                labels[s.z] = codec.unpack_labels(s.labels, shape)
                answered = codec.unpack_mask(s.answered, shape)
                provenance[s.z] = np.where(answered, ANSWERED, PREDICTED)
                writer.writerow([scan_id, scan.name, s.z, s.source, s.step_id or "", s.query_id or "",
                                 int(answered.sum()), int((~answered).sum()), s.step.state if s.step else ""])
            archive.writestr(f"scan-{scan_id}-labels.nii.gz", nifti_bytes(labels, scan.geometry))
            archive.writestr(f"scan-{scan_id}-provenance.nii.gz", nifti_bytes(provenance, scan.geometry))
        archive.writestr("slices.csv", listing.getvalue())
    return buffer.getvalue()


# Type 2 attributes highdicom copies from the source images; empty when our rendering lacks them.
_TYPE2 = ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
          "AccessionNumber", "StudyID", "Manufacturer")


def _with_type2_defaults(ds):
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    if "^" not in str(ds.PatientName):
        ds.PatientName = f"{ds.PatientName or 'Anonymous'}^"  # a one-component name needs its caret
    return ds


def dicom_seg_bytes(segmentation: Segmentation) -> bytes:
    """The segmentation as a DICOM-SEG (highdicom) that a PACS can lay over the CT it was made from.

    A scan imported from DICOM: the SEG refers to its original instances (kept as
    uploaded), with the labels brought onto the original grid, one frame per source
    image. Any other scan (NIfTI, MHA, NRRD): there are no DICOM images to refer to,
    so a DICOM rendering of the working-grid CT is written on the fly with new UIDs,
    and the SEG travels with that series.
    """
    scan = segmentation.scan
    labels = load_npy(segmentation.labels)
    sources = _original_series(scan)
    if sources:
        on_original = grids.to_original(scan, labels, labels=True)
        frames = on_original[[_slice_index(ds, scan.original_geometry) for ds in sources]]
    else:
        sources, frames = _working_grid_series(scan), labels
    return _segmentation(segmentation, sources, frames)


def _original_series(scan) -> list:
    """The scan's original DICOM instances (headers only) in slice order; [] when it has none."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if scan.source_format != "dicom" or not scan.series_uid:
        return []
    found = []
    for row in scan.files.all():
        with row.file.open("rb") as fh:
            try:
                ds = pydicom.dcmread(fh, stop_before_pixels=True)
            except (InvalidDicomError, EOFError, ValueError):
                continue  # DICOMDIR, notes, anything beside the images
        if getattr(ds, "SeriesInstanceUID", None) == scan.series_uid and "ImagePositionPatient" in ds:
            found.append(_with_type2_defaults(ds))
    if len(found) != scan.original_geometry["shape"][0]:
        return []  # not one instance per slice (an old import, files missing): refer to a rendering instead
    return sorted(found, key=lambda ds: _slice_index(ds, scan.original_geometry))


def _slice_index(ds, geometry: dict) -> int:
    """The z index on ``geometry`` of a DICOM instance, from its position along the slice normal."""
    direction = np.asarray(geometry["direction"], dtype=np.float64).reshape(3, 3)
    offset = np.asarray(ds.ImagePositionPatient, dtype=np.float64) - np.asarray(geometry["origin"])
    return int(round(float(offset @ direction[:, 2]) / geometry["spacing"][0]))


def _working_grid_series(scan) -> list:
    import pydicom

    hu = np.asarray(ml_adapter.scan_hu(scan))
    with tempfile.TemporaryDirectory() as tmp:
        paths = ml_adapter.write_dicom_ct(hu, scan.geometry, tmp, series_description=f"MyoLabel working grid {scan.name}",
                                      patient_id=scan.patient_id or "ANON")
        return [_with_type2_defaults(pydicom.dcmread(p)) for p in paths]


def _segmentation(segmentation: Segmentation, sources: list, labels: np.ndarray) -> bytes:
    """A binary DICOM-SEG of ``labels`` (one frame per source image, in their order)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    label_rows = list(segmentation.project.label_set.labels.order_by("value"))
    present = [lab for lab in label_rows if (labels == lab.value).any()]
    # Relabel to segment numbers 1..n in label-value order (DICOM-SEG needs consecutive numbers).
    lut = np.zeros(256, np.uint16)
    for number, lab in enumerate(present, start=1):
        lut[lab.value] = number
    pixel = lut[labels]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="MyoLabel Bayesian U-Net", version=str(segmentation.model_version.number),
        family=codes.cid7162.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=lab.name[:64],
            segmented_property_category=codes.SCT.Tissue if lab.kind == "muscle" else codes.SCT.Bone,
            segmented_property_type=codes.SCT.Muscle if lab.kind == "muscle" else codes.SCT.Bone,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
        for number, lab in enumerate(present, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixel, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=100,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="MyoLabel",
        manufacturer_model_name="MyoLabel", software_versions="1", device_serial_number="0")
    out = io.BytesIO()
    seg.save_as(out)
    return out.getvalue()
