"""Reading and writing CT volumes and label maps with their physical geometry.

Inputs: a DICOM series (a folder, a .zip, or one .dcm file), NIfTI (.nii,
.nii.gz), MetaImage (.mha, .mhd) and NRRD (.nrrd, .nhdr). Every reader returns a
(z, y, x) array and a ``Geometry`` (LPS, as SimpleITK). Bad input raises a
subclass of ``mltasks.errors.MyoLabelError`` whose message names the file, says
what is wrong and what to do.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from mltasks.errors import NotAnImage
from mltasks.geometry import Geometry
from mltasks.io import dicom
from mltasks.io.dicom import SeriesInfo
from mltasks.io.dicom_write import write_dicom_series
from mltasks.io.files import READ_SUFFIXES, image_to_hu, read_image_file, suffix_of, write_volume
from mltasks.io.labels import labels_outside, read_label_onto
from mltasks.io.zipsafe import extracted_zip, safe_extract_zip

__all__ = [
    "SeriesInfo",
    "dicom_identifiers",
    "labels_outside",
    "list_dicom_series",
    "read_label_onto",
    "read_volume",
    "safe_extract_zip",
    "write_dicom_series",
    "write_volume",
]


def read_volume(path: str | Path, *, series_uid: str | None = None) -> tuple[np.ndarray, Geometry]:
    """Read a CT volume in HU with its geometry.

    Args:
        path: a DICOM folder, a .zip of one, a single .dcm file, or a NIfTI/MetaImage/NRRD file.
        series_uid: the SeriesInstanceUID to read when a DICOM folder or zip holds several series.
    Returns:
        (z, y, x) HU array (int16 when the values are exact integers, else float32) and its Geometry.
    Raises:
        NotAnImage, CorruptImage, SeveralSeries (with ``.series``), SeriesNotFound, NotCT,
        GantryTilt, IrregularSlices, UnsafeZip.
    """
    path = Path(path)
    if path.is_dir():
        return dicom.read_series(path, dicom.scan_folder(path), series_uid=series_uid)
    _check_exists(path)
    if _is_zip(path):
        with extracted_zip(path) as folder:
            return _read_extracted(path, folder, series_uid)
    if suffix_of(path) in READ_SUFFIXES:
        return image_to_hu(read_image_file(path))
    groups = dicom.scan_files([path])
    if groups:
        return dicom.read_series(path, groups, series_uid=series_uid)
    return image_to_hu(read_image_file(path))


def list_dicom_series(path: str | Path) -> list[SeriesInfo]:
    """The DICOM series in a folder, a zip or a single file, largest first (empty if none).

    ``SeriesInfo.files`` is empty for a zip, whose extraction is deleted on return.
    """
    path = Path(path)
    if path.is_dir():
        return dicom.series_infos(dicom.scan_folder(path))
    _check_exists(path)
    if _is_zip(path):
        with extracted_zip(path) as folder:
            infos = dicom.series_infos(dicom.scan_folder(folder))
        return [dataclasses.replace(info, files=()) for info in infos]
    return dicom.series_infos(dicom.scan_files([path]))


def dicom_identifiers(path: str | Path, *, series_uid: str | None = None) -> dict[str, str]:
    """PatientID, StudyInstanceUID, SeriesInstanceUID, Modality, Manufacturer, SeriesDescription.

    Of the chosen (or only) series; an empty dict for non-DICOM inputs.
    Raises SeveralSeries / SeriesNotFound like ``read_volume``.
    """
    infos = list_dicom_series(path)
    if not infos:
        return {}
    if series_uid is None and len(infos) == 1:
        return infos[0].identifiers()
    groups = {info.series_instance_uid: [] for info in infos}
    dicom.choose_series(Path(path), groups, series_uid)  # raises with the listing
    return next(info for info in infos if info.series_instance_uid == series_uid).identifiers()


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise NotAnImage(f"{path}: no such file or folder; check the path")


def _is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip" or (
        suffix_of(path) not in READ_SUFFIXES and zipfile.is_zipfile(path)
    )


def _read_extracted(
    source: Path, folder: Path, series_uid: str | None
) -> tuple[np.ndarray, Geometry]:
    groups = dicom.scan_folder(folder)
    if groups:
        return dicom.read_series(source, groups, series_uid=series_uid)
    images = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and suffix_of(p) in READ_SUFFIXES and p.suffix != ".raw"
    )
    if len(images) == 1:
        return image_to_hu(read_image_file(images[0]))
    what = (
        "no DICOM series and no image file"
        if not images
        else f"{len(images)} image files and no DICOM series"
    )
    msg = f"{source}: the zip holds {what}; zip one DICOM series folder or a single image file"
    raise NotAnImage(msg)
