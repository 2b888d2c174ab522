"""The atrophy and fat report of a finished segmentation: CSV, and a one-page HTML per scan.

Per structure: volume, mean and median HU, the intramuscular fat fraction (share of the
voxels in the fat HU range, ``MYOLABEL_FAT_HU_MIN``/``_MAX``, or per request) and, for
sided twins, the left/right volume ratio (``mltasks.muscle_report``). The page names
the patient by what the scan's DICOM import stored (``Scan.patient_id``, study, series)
and, when the same project has a finished segmentation of another scan of that patient,
shows it beside this one (the most recent such scan). Its figure is a data: PNG and it
has no style or script, so it shows the same under the pages' Content-Security-Policy
as opened from disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.loader import render_to_string
from django.utils import timezone

from backend.acquisition import ml_adapter
from backend.acquisition.models import Segmentation
from backend.acquisition.outputs.export import load_npy


def fat_range(low: float | None = None, high: float | None = None) -> tuple[float, float]:
    """The fat HU range: the request's bounds where given, the settings' otherwise; refused when empty."""
    chosen = (settings.MYOLABEL_FAT_HU_MIN if low is None else low,
              settings.MYOLABEL_FAT_HU_MAX if high is None else high)
    try:
        return ml_adapter.check_fat_range(chosen)
    except ValueError as exc:
        raise ValidationError(str(exc), code="invalid_fat_range") from exc


def muscle_rows(seg: Segmentation, fat_hu: tuple[float, float]) -> list[dict]:
    hu = ml_adapter.scan_hu(seg.scan)
    return ml_adapter.muscle_rows(load_npy(seg.labels), hu, seg.scan.geometry, seg.project.label_set, fat_hu=fat_hu)


def muscle_report_csv(seg: Segmentation, fat_hu: tuple[float, float]) -> str:
    return ml_adapter.muscle_csv(muscle_rows(seg, fat_hu))


def companion_of(seg: Segmentation) -> Segmentation | None:
    """The newest finished segmentation, in the same project, of another scan of the same patient."""
    patient = seg.scan.patient_id
    if not patient:
        return None
    return (Segmentation.objects.filter(project=seg.project, status=Segmentation.Status.DONE,
                                        scan__patient_id=patient)
            .exclude(scan=seg.scan).select_related("scan", "model_version", "project__label_set")
            .order_by("-scan__created", "-finished", "-id").first())


@dataclass
class _Column:
    caption: str
    seg: Segmentation
    rows: list[dict]


# Read from the scan's first original DICOM file: (keyword, caption on the page).
_IDENTITY = (("PatientName", "Patient name"), ("PatientBirthDate", "Birth date"), ("PatientSex", "Sex"),
             ("StudyDate", "Study date"), ("StudyDescription", "Study"), ("InstitutionName", "Institution"))


def patient_identity(scan) -> list[tuple[str, str]]:
    """(caption, value) of the patient and study as the scan's original DICOM files say (the row keeps
    only the patient ID); empty for NIfTI, MHA and NRRD imports, which carry none."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if scan.source_format != "dicom":
        return []
    for row in scan.files.all()[:20]:  # a DICOMDIR or a note may come first
        try:
            with row.file.open("rb") as fh:
                ds = pydicom.dcmread(fh, stop_before_pixels=True)
        except (InvalidDicomError, EOFError, ValueError, OSError):
            continue
        if scan.series_uid and getattr(ds, "SeriesInstanceUID", None) != scan.series_uid:
            continue
        return [(caption, _shown(keyword, ds.get(keyword))) for keyword, caption in _IDENTITY
                if str(ds.get(keyword) or "").strip()]
    return []


def _shown(keyword: str, value) -> str:
    text = str(value).strip()
    if keyword.endswith("Date") and len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text.replace("^", " ").strip() if keyword == "PatientName" else text


def muscle_report_html(seg: Segmentation, fat_hu: tuple[float, float]) -> str:
    columns = [_Column(_caption(seg), seg, muscle_rows(seg, fat_hu))]
    other = companion_of(seg)
    if other is not None:
        columns.append(_Column(_caption(other), other, muscle_rows(other, fat_hu)))
    figure = ml_adapter.muscle_figure([(c.caption, c.rows) for c in columns])
    sided = any(row["twin"] for row in columns[0].rows)  # a left/right column only where there are twins
    return render_to_string("reports/muscle_report.html", {
        "scan": seg.scan, "seg": seg, "project": seg.project, "columns": columns, "figure": figure,
        "identity": patient_identity(seg.scan),
        "lines": _lines(columns, sided), "sided": sided, "fat_min": fat_hu[0], "fat_max": fat_hu[1],
        "made": timezone.now(),
    })


def _caption(seg: Segmentation) -> str:
    return f"{seg.scan.name} ({seg.scan.created:%Y-%m-%d})"


def _lines(columns: list[_Column], sided: bool) -> list[dict]:
    """One table line per structure of the first scan: its figures in every column."""
    lines = []
    for k, row in enumerate(columns[0].rows):
        cells = []
        for column in columns:
            other = column.rows[k] if k < len(column.rows) and column.rows[k]["name"] == row["name"] else None
            cells.append(_cells(other) if sided else _cells(other)[:4])
        lines.append({"name": row["name"], "kind": row["kind"], "cells": cells})
    return lines


def _cells(row: dict | None) -> list[str]:
    if row is None or not row["voxels"]:
        return ["–"] * 5
    ratio = row["left_right_volume_ratio"]
    return [f"{row['volume_ml']:.1f}", f"{row['mean_hu']:.0f}", f"{row['median_hu']:.0f}",
            f"{100.0 * row['fat_fraction']:.1f}", "" if ratio is None else f"{ratio:.2f}"]
