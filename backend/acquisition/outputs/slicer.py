"""3D Slicer round trip: a segmentation out as ``.seg.nrrd``, a ``.seg.nrrd`` in as a scan's reference labels.

Out: the labels on the CT's original grid (``backend.imaging.grids``, as the NIfTI download),
one segment per structure present with the label set's name, colour and value. In: segments
map to the project's label set by name (a name it lacks refuses the whole file, listing
every such name), the labels are placed on the scan's working grid by physical position and
stored as the scan's reference label map for that label set, the one the import of a CT
with labels makes (``backend.imaging.services_scans``). Every check runs before anything is
stored; an existing reference is replaced only when asked.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import Http404

from backend.acquisition import ml_adapter
from backend.acquisition.errors import StepConflict
from backend.acquisition.models import Segmentation
from backend.acquisition.outputs.export import load_npy
from backend.core.file_cleanup import delete_after_commit
from backend.imaging import grids
from backend.imaging.models import ReferenceLabelMap, Scan
from backend.imaging.volumes import save_array

if TYPE_CHECKING:  # annotations only
    from django.core.files.uploadedfile import UploadedFile

    from backend.projects.models import Project

# A .seg.nrrd is read whole into memory; a 512 x 512 x 2000 uint8 map compresses far below this.
MAX_SEG_NRRD_BYTES = 512 * 2**20


def segmentation_seg_nrrd(seg: Segmentation) -> bytes:
    """The segmentation as a Slicer ``.seg.nrrd`` on the scan's original CT grid (LPS)."""
    labels = grids.to_original(seg.scan, load_npy(seg.labels), labels=True)
    return ml_adapter.seg_nrrd_bytes(labels, seg.scan.original_geometry, seg.project.label_set)


def project_scan(project: Project, scan_id: int) -> Scan:
    """A scan of one of the project's pools or test scans; 404 otherwise (as for a scan that does not exist)."""
    scan = (Scan.objects.filter(pk=scan_id).filter(pool__projects=project).first()
            or project.test_scans.filter(pk=scan_id).first())
    if scan is None:
        raise Http404(f"No scan {scan_id} in the pools or test scans of project {project.name!r}.")
    return scan


def reference_import_seg_nrrd(*, project: Project, scan: Scan, upload: UploadedFile,
                              replace: bool = False) -> ReferenceLabelMap:
    """Store a Slicer segmentation as ``scan``'s reference labels for the project's label set.

    Raises:
        ValidationError (code ``unmapped_segments``, ``invalid_label_map``, ``empty_label_map``,
        ``too_large``): nothing stored. StepConflict (``reference_exists``) without ``replace``.
    """
    label_set = project.label_set
    existing = ReferenceLabelMap.objects.filter(scan=scan, label_set=label_set).first()
    if existing is not None and not replace:
        raise StepConflict(f"scan {scan.name!r} already has reference labels for label set {label_set.name!r} "
                           f"(from {existing.source_name or 'its import'}); send replace=true to replace them",
                           code="reference_exists")
    name = Path(upload.name or "labels.seg.nrrd").name
    labels = _read_onto_scan(upload, name, project, scan)
    slices = [int(k) for k in np.flatnonzero(labels.reshape(labels.shape[0], -1).any(axis=1))]
    stored = save_array(labels, ReferenceLabelMap.labels.field.generate_filename(None, f"{uuid.uuid4().hex}.npy"))
    try:
        with transaction.atomic():
            reference, _ = ReferenceLabelMap.objects.update_or_create(
                scan=scan, label_set=label_set,
                defaults={"labels": stored, "labelled_slices": slices, "source_name": name})
            if existing is not None:
                delete_after_commit([existing.labels.name])  # the replaced map, unless a row still names it
    except BaseException:
        default_storage.delete(stored)
        raise
    return reference


def _read_onto_scan(upload: UploadedFile, name: str, project: Project, scan: Scan) -> np.ndarray:
    if upload.size > MAX_SEG_NRRD_BYTES:
        raise ValidationError(f"{name}: {upload.size} bytes; a .seg.nrrd may have at most {MAX_SEG_NRRD_BYTES}",
                              code="too_large")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.seg.nrrd"
        with path.open("wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        try:
            labels = ml_adapter.seg_nrrd_onto(path, name, project.label_set, scan.geometry)
        except ml_adapter.UnmappedSegments as exc:
            raise ValidationError(str(exc), code="unmapped_segments") from exc
        except ml_adapter.LabelMapRefused as exc:
            raise ValidationError(str(exc), code="invalid_label_map") from exc
    if not labels.any():
        raise ValidationError(f"{name}: no labelled voxel lies on scan {scan.name!r}; check that the segmentation "
                              "belongs to this CT", code="empty_label_map")
    return labels
