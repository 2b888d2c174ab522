"""QIDO-RS searches of an archive, answered as plain rows (DICOM JSON read once, here).

Text filters match anywhere in the value (``*text*``, QIDO's wildcard); a date range is
inclusive at both ends. Each search returns at most ``SEARCH_LIMIT`` rows: a person narrows a
search rather than pages through a hospital's archive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from backend.imaging.models import DicomWebArchive, Scan
from backend.imaging.pacs.client import client_for, pacs_call

SEARCH_LIMIT = 100
_STUDY_FIELDS = ["StudyDescription", "PatientName", "PatientID", "StudyDate", "ModalitiesInStudy",
                 "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "AccessionNumber"]
_SERIES_FIELDS = ["SeriesDescription", "Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances",
                  "SeriesDate", "BodyPartExamined"]


@dataclass(frozen=True)
class StudyFilters:
    patient_id: str = ""
    patient_name: str = ""
    date_from: date | None = None
    date_to: date | None = None
    modality: str = ""
    description: str = ""


def _value(row: dict, tag: str, default=""):
    values = row.get(tag, {}).get("Value") or [default]
    value = values[0]
    if isinstance(value, dict):  # a person name: {"Alphabetic": "DOE^JOHN"}
        return value.get("Alphabetic", "")
    return value


def _contains(text: str) -> str:
    return f"*{text.strip()}*"


def _date_range(first: date | None, last: date | None) -> str:
    start = first.strftime("%Y%m%d") if first else ""
    end = last.strftime("%Y%m%d") if last else ""
    return start if start == end else f"{start}-{end}"


def studies_search(*, archive: DicomWebArchive, filters: StudyFilters) -> list[dict]:
    """The studies of ``archive`` matching ``filters`` (newest first, at most SEARCH_LIMIT)."""
    search = {}
    if filters.patient_id.strip():
        search["PatientID"] = _contains(filters.patient_id)
    if filters.patient_name.strip():
        search["PatientName"] = _contains(filters.patient_name)
    if filters.date_from or filters.date_to:
        search["StudyDate"] = _date_range(filters.date_from, filters.date_to)
    if filters.modality.strip():
        search["ModalitiesInStudy"] = filters.modality.strip().upper()
    if filters.description.strip():
        search["StudyDescription"] = _contains(filters.description)
    client = client_for(archive)
    rows = pacs_call("searching studies", archive.url, lambda: client.search_for_studies(
        search_filters=search, fields=_STUDY_FIELDS, limit=SEARCH_LIMIT))
    studies = [{
        "study_uid": _value(r, "0020000D"),
        "patient_id": _value(r, "00100020"),
        "patient_name": _value(r, "00100010"),
        "study_date": _value(r, "00080020"),
        "description": _value(r, "00081030"),
        "accession_number": _value(r, "00080050"),
        "modalities": r.get("00080061", {}).get("Value") or [],
        "n_series": _value(r, "00201206", None),
        "n_instances": _value(r, "00201208", None),
    } for r in rows]
    return sorted(studies, key=lambda s: s["study_date"], reverse=True)


def series_search(*, archive: DicomWebArchive, study_uid: str, modality: str = "",
                  description: str = "") -> list[dict]:
    """The series of one study, each with the scan it was already imported as (``imported``)."""
    search = {}
    if modality.strip():
        search["Modality"] = modality.strip().upper()
    if description.strip():
        search["SeriesDescription"] = _contains(description)
    client = client_for(archive)
    rows = pacs_call("searching series", archive.url, lambda: client.search_for_series(
        study_instance_uid=study_uid, search_filters=search, fields=_SERIES_FIELDS, limit=SEARCH_LIMIT))
    series = [{
        "series_uid": _value(r, "0020000E"),
        "study_uid": _value(r, "0020000D") or study_uid,
        "modality": _value(r, "00080060"),
        "description": _value(r, "0008103E"),
        "number": _value(r, "00200011", None),
        "body_part": _value(r, "00180015"),
        "n_instances": _value(r, "00201209", None),
    } for r in rows]
    # A series is imported once in the whole installation (Scan's constraint): say so before the import does.
    imported = set(Scan.objects.filter(series_uid__in=[s["series_uid"] for s in series if s["series_uid"]])
                   .values_list("series_uid", flat=True))
    return [{**s, "imported": s["series_uid"] in imported} for s in series]
