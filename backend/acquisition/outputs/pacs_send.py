"""Sending a finished segmentation to a PACS as a DICOM-SEG (STOW-RS), beside the CT it was made from.

The SEG is the download's (``export.dicom_seg_bytes``): it refers to the scan's original DICOM
instances frame by frame and carries their patient and study, so the archive files it in the
CT's study and a viewer lays it over that series. Only a scan imported from DICOM can be sent:
for any other the SEG would refer to a rendering the archive does not hold.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pydicom

from backend.acquisition.errors import StepConflict
from backend.acquisition.models import Segmentation
from backend.acquisition.outputs.export import dicom_seg_bytes
from backend.imaging.pacs.client import PacsError, client_for, pacs_call

if TYPE_CHECKING:  # annotations only
    from backend.imaging.models import DicomWebArchive

# Failure reasons (0008,1197) of a STOW-RS answer, for the message.
_REASONS = {0x0110: "processing failure", 0xA700: "out of resources", 0xA900: "the data does not match the SOP class",
            0xC000: "cannot understand", 0xC122: "referenced transfer syntax not supported"}


def segmentation_send(*, segmentation: Segmentation, archive: DicomWebArchive) -> dict:
    """STOW-RS the segmentation's DICOM-SEG to ``archive``; returns its study, series and instance UIDs.

    Raises StepConflict (409) when the segmentation is not done or its scan has no DICOM
    originals, PacsError when the archive refuses or cannot be reached.
    """
    scan = segmentation.scan
    if segmentation.status != Segmentation.Status.DONE:
        raise StepConflict(f"segmentation {segmentation.id} is {segmentation.status}; it can be sent once it is done",
                           code="not_done")
    if scan.source_format != "dicom" or not scan.series_uid:
        raise StepConflict(f"scan {scan.name!r} was not imported from DICOM ({scan.source_format}): a PACS holds "
                           "no images this segmentation could lie over; download it as NIfTI instead",
                           code="not_dicom")
    seg = pydicom.dcmread(io.BytesIO(dicom_seg_bytes(segmentation)))
    referenced = {item.SeriesInstanceUID for item in seg.ReferencedSeriesSequence}
    if referenced != {scan.series_uid}:
        raise StepConflict(f"the original DICOM files of scan {scan.name!r} are not all kept, so the segmentation "
                           "cannot refer to its images in the PACS; import the series again", code="not_dicom")
    client = client_for(archive)
    answer = pacs_call("sending the segmentation", archive.url,
                       lambda: client.store_instances([seg], study_instance_uid=seg.StudyInstanceUID))
    _raise_on_failure(answer, archive)
    return {"archive": archive.pk, "study_uid": seg.StudyInstanceUID, "series_uid": seg.SeriesInstanceUID,
            "sop_instance_uid": seg.SOPInstanceUID, "referenced_series_uid": scan.series_uid}


def _raise_on_failure(answer, archive: DicomWebArchive) -> None:
    failed = getattr(answer, "FailedSOPSequence", None) or []
    if failed:
        code = int(getattr(failed[0], "FailureReason", 0) or 0)
        reason = _REASONS.get(code, f"failure reason {code:#06x}")
        raise PacsError(f"the archive {archive.name!r} did not store the segmentation ({reason})")
