"""Reading classic (one slice per file) DICOM CT series from a folder.

Headers are read with pydicom (no pixel data), grouped by SeriesInstanceUID,
ordered by position along the slice normal and checked (modality, gantry tilt,
even spacing) before any pixel is read. Pixels are decoded slice by slice by
SimpleITK/GDCM (which handles JPEG, JPEG 2000 and JPEG-LS and applies
RescaleSlope/RescaleIntercept) into one preallocated (z, y, x) array, so a
500-slice series never exists twice in memory.

Geometry: the x axis is the row direction (ImageOrientationPatient[0:3]), y the
column direction (ImageOrientationPatient[3:6]), z the slice normal (their
cross product); slices are sorted by increasing position along that normal, so
the direction matrix is always right-handed. Origin is ImagePositionPatient of
the first slice. DICOM patient space is LPS, as in SimpleITK.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from mltasks.errors import (
    CorruptImage,
    GantryTilt,
    IrregularSlices,
    NotAnImage,
    NotCT,
    SeriesNotFound,
    SeveralSeries,
    UnsupportedImage,
)
from mltasks.geometry import Geometry

MAX_TILT_DEG = 0.5
SPACING_REL_TOL = 0.01
SPACING_ABS_TOL_MM = 0.1
_INT16_SAFE = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))

_TAGS = [
    "SOPClassUID",
    "Modality",
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Manufacturer",
    "SeriesDescription",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "NumberOfFrames",
    "SliceThickness",
    "SpacingBetweenSlices",
    "GantryDetectorTilt",
    "RescaleSlope",
    "RescaleIntercept",
]


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a folder or zip; the identifiers the backend stores."""

    series_instance_uid: str
    series_description: str
    n_slices: int
    modality: str
    patient_id: str
    study_instance_uid: str
    manufacturer: str
    files: tuple[Path, ...] = field(default=(), repr=False, compare=False)

    def identifiers(self) -> dict[str, str]:
        """The identifying tags under their DICOM keywords (PatientID, StudyInstanceUID, ...)."""
        return {
            "PatientID": self.patient_id,
            "StudyInstanceUID": self.study_instance_uid,
            "SeriesInstanceUID": self.series_instance_uid,
            "Modality": self.modality,
            "Manufacturer": self.manufacturer,
            "SeriesDescription": self.series_description,
        }

    def describe(self) -> str:
        return f"{self.series_instance_uid or '(no UID)'} '{self.series_description}' ({self.n_slices} slices, {self.modality})"


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def scan_folder(folder: Path) -> dict[str, list[tuple[Path, pydicom.Dataset]]]:
    """Headers of every DICOM image file under ``folder``, grouped by SeriesInstanceUID."""
    paths = [Path(root) / name for root, _dirs, names in os.walk(folder) for name in sorted(names)]
    return scan_files(paths)


def scan_files(paths: list[Path]) -> dict[str, list[tuple[Path, pydicom.Dataset]]]:
    """Headers of the DICOM image files among ``paths``, grouped by SeriesInstanceUID.

    Files that are not DICOM, and DICOM files without pixel rows (DICOMDIR,
    structured reports), are skipped.
    """
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
        except (InvalidDicomError, OSError, ValueError, EOFError, TypeError):
            continue
        if "Rows" not in ds:
            continue
        groups.setdefault(_text(ds, "SeriesInstanceUID"), []).append((path, ds))
    return groups


def series_infos(groups: dict[str, list[tuple[Path, pydicom.Dataset]]]) -> list[SeriesInfo]:
    infos = []
    for uid, items in groups.items():
        ds = items[0][1]
        infos.append(
            SeriesInfo(
                series_instance_uid=uid,
                series_description=_text(ds, "SeriesDescription"),
                n_slices=len(items),
                modality=_text(ds, "Modality"),
                patient_id=_text(ds, "PatientID"),
                study_instance_uid=_text(ds, "StudyInstanceUID"),
                manufacturer=_text(ds, "Manufacturer"),
                files=tuple(p for p, _ in items),
            )
        )
    return sorted(infos, key=lambda s: (-s.n_slices, s.series_instance_uid))


def choose_series(
    source: Path, groups: dict[str, list[tuple[Path, pydicom.Dataset]]], series_uid: str | None
) -> list[tuple[Path, pydicom.Dataset]]:
    """The slices of the requested series, or of the only one; raises otherwise."""
    if not groups:
        msg = f"{source}: no DICOM image found; give a folder or zip holding the CT's .dcm files"
        raise NotAnImage(msg)
    if series_uid is not None:
        if series_uid not in groups:
            known = ", ".join(info.describe() for info in series_infos(groups))
            msg = f"{source}: series {series_uid} not found; the series present are: {known}"
            raise SeriesNotFound(msg)
        return groups[series_uid]
    if len(groups) > 1:
        infos = series_infos(groups)
        listing = "; ".join(info.describe() for info in infos)
        msg = f"{source}: holds {len(infos)} DICOM series ({listing}); choose one by its SeriesInstanceUID"
        raise SeveralSeries(msg, infos)
    return next(iter(groups.values()))


def _vector(ds: pydicom.Dataset, keyword: str, n: int, path: Path) -> np.ndarray:
    value = ds.get(keyword)
    if value is None or len(value) != n:
        msg = f"{path}: DICOM tag {keyword} is missing or malformed; the slice cannot be placed in space"
        raise UnsupportedImage(msg)
    return np.asarray([float(v) for v in value], dtype=np.float64)


def check_modality(source: Path, items: list[tuple[Path, pydicom.Dataset]]) -> None:
    modalities = sorted({_text(ds, "Modality") for _, ds in items})
    if modalities != ["CT"]:
        msg = (
            f"{source}: series has modality {'/'.join(m or '(none)' for m in modalities)}, not CT; "
            "MyoLabel segments CT only, choose the CT series"
        )
        raise NotCT(msg)


def _check_uniform(
    source: Path, items: list[tuple[Path, pydicom.Dataset]]
) -> tuple[np.ndarray, np.ndarray]:
    """Common orientation (6,) and pixel spacing (row, col) of all slices."""
    first_path, first = items[0]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        msg = f"{first_path}: multi-frame (enhanced) DICOM is not supported; export the CT as single-frame slices"
        raise UnsupportedImage(msg)
    if int(first.get("SamplesPerPixel", 1) or 1) != 1:
        msg = (
            f"{first_path}: colour DICOM image; a CT must be greyscale, export the original series"
        )
        raise UnsupportedImage(msg)
    iop = _vector(first, "ImageOrientationPatient", 6, first_path)
    spacing = _vector(first, "PixelSpacing", 2, first_path)
    for path, ds in items[1:]:
        same_size = (ds.Rows, ds.Columns) == (first.Rows, first.Columns)
        if not same_size or not np.allclose(
            _vector(ds, "ImageOrientationPatient", 6, path), iop, atol=1e-4
        ):
            msg = f"{source}: slices differ in size or orientation ({first_path.name} vs {path.name}); export one stack"
            raise UnsupportedImage(msg)
        if not np.allclose(_vector(ds, "PixelSpacing", 2, path), spacing, atol=1e-4):
            msg = f"{source}: slices differ in pixel spacing ({first_path.name} vs {path.name}); export one stack"
            raise UnsupportedImage(msg)
    return iop, spacing


def order_slices(
    source: Path, items: list[tuple[Path, pydicom.Dataset]]
) -> tuple[list[Path], Geometry, list[pydicom.Dataset]]:
    """Sort slices along the normal and check tilt and spacing; return files, geometry, headers."""
    iop, pixel_spacing = _check_uniform(source, items)
    # Orientation tags are often written with 6 decimals: renormalise so spacings stay exact.
    row, col = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    positions = np.stack([_vector(ds, "ImagePositionPatient", 3, p) for p, ds in items])
    order = np.argsort(positions @ normal, kind="stable")
    positions = positions[order]
    items = [items[i] for i in order]
    z_spacing = _slice_interval(source, items, positions, normal)
    ds0 = items[0][1]
    geometry = Geometry(
        shape=(len(items), int(ds0.Rows), int(ds0.Columns)),
        spacing=(z_spacing, float(pixel_spacing[0]), float(pixel_spacing[1])),
        origin=tuple(float(v) for v in positions[0]),
        direction=tuple(float(v) for v in np.column_stack([row, col, normal]).ravel()),
    )
    return [p for p, _ in items], geometry, [ds for _, ds in items]


def _slice_interval(
    source: Path,
    items: list[tuple[Path, pydicom.Dataset]],
    positions: np.ndarray,
    normal: np.ndarray,
) -> float:
    if len(items) == 1:
        ds = items[0][1]
        return float(ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0)
    _check_tilt(source, items, positions, normal)
    steps = np.diff(positions @ normal)
    if np.any(steps < 1e-3):
        k = int(np.argmin(steps))
        msg = (
            f"{source}: slices {items[k][0].name} and {items[k + 1][0].name} share the position "
            f"{positions[k] @ normal:.2f} mm; the series mixes several acquisitions, export a single one"
        )
        raise IrregularSlices(msg)
    median = float(np.median(steps))
    tolerance = max(SPACING_REL_TOL * median, SPACING_ABS_TOL_MM)
    bad = np.flatnonzero(np.abs(steps - median) > tolerance)
    if bad.size:
        raise IrregularSlices(_irregular_message(source, steps, median, bad, positions @ normal))
    return median


def _irregular_message(
    source: Path, steps: np.ndarray, median: float, bad: np.ndarray, z: np.ndarray
) -> str:
    gaps = []
    for k in bad[:5]:
        missing = round(steps[k] / median) - 1
        where = f"between {z[k]:.2f} and {z[k + 1]:.2f} mm"
        gaps.append(
            f"about {missing} slice(s) missing {where}"
            if missing >= 1
            else f"a {steps[k]:.2f} mm step {where}"
        )
    return (
        f"{source}: uneven slice spacing (usual interval {median:.2f} mm; {'; '.join(gaps)}); "
        "re-export the complete series with all its slices"
    )


def _check_tilt(
    source: Path,
    items: list[tuple[Path, pydicom.Dataset]],
    positions: np.ndarray,
    normal: np.ndarray,
) -> None:
    # A tilted gantry with axial orientation tags shears the stack: positions drift
    # off the slice normal. A tilt already folded into the orientation is a valid grid.
    travel = positions[-1] - positions[0]
    if np.linalg.norm(travel) < 1e-3:
        return  # all slices at one place: reported as duplicates, not as a tilt
    cosine = abs(float(travel @ normal)) / max(float(np.linalg.norm(travel)), 1e-9)
    angle = float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
    if angle > MAX_TILT_DEG:
        tag = items[0][1].get("GantryDetectorTilt")
        tag_text = (
            f" (GantryDetectorTilt tag: {float(tag):.1f} deg)" if tag not in (None, "") else ""
        )
        msg = (
            f"{source}: the slices are sheared by a gantry tilt of {angle:.1f} deg{tag_text}; "
            "reformat the series to an untilted stack on the scanner or PACS and import that"
        )
        raise GantryTilt(msg)


def read_pixels(
    files: list[Path], geometry: Geometry, headers: list[pydicom.Dataset]
) -> np.ndarray:
    """Decode the ordered slices into one (z, y, x) HU array: int16 when exact, else float32."""
    exact = all(_is_integer_rescale(ds) for ds in headers)
    volume = np.empty(geometry.shape, dtype=np.int16 if exact else np.float32)
    reader = sitk.ImageFileReader()
    reader.LoadPrivateTagsOff()  # private tags are not needed and slow the per-file read down
    for k, path in enumerate(files):
        reader.SetFileName(str(path))
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            msg = f"{path}: the DICOM pixel data cannot be decoded (truncated or damaged file); re-export the series"
            raise CorruptImage(msg) from exc
        plane = sitk.GetArrayViewFromImage(image).reshape(-1, *geometry.shape[1:])[0]
        if volume.dtype == np.int16 and plane.dtype not in _INT16_SAFE and not _fits_int16(plane):
            volume = volume.astype(np.float32)  # extended-range CT: rare, so convert lazily
        volume[k] = plane
        del plane, image
    return volume


def _fits_int16(plane: np.ndarray) -> bool:
    return bool(plane.min() >= -32768 and plane.max() <= 32767)


def _is_integer_rescale(ds: pydicom.Dataset) -> bool:
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return slope == 1.0 and intercept == round(intercept)


def read_series(
    source: Path,
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]],
    *,
    series_uid: str | None = None,
) -> tuple[np.ndarray, Geometry]:
    """Read one CT series from scanned ``groups``; ``source`` names the upload in messages."""
    items = choose_series(source, groups, series_uid)
    check_modality(source, items)
    files, geometry, headers = order_slices(source, items)
    return read_pixels(files, geometry, headers), geometry
