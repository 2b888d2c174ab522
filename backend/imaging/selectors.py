"""Reads of pools, scans and their stored volumes for the API.

Access is checked by the callers (``backend.projects.access``); these functions
assume the user may see the scan they are given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from django.apps import apps
from django.db.models import Count, QuerySet
from django.db.models.fields.files import FieldFile
from django.http import Http404

from backend.imaging.models import Pool, ReferenceLabelMap, Scan
from backend.imaging.volumes import reference_labels, scan_volume, stored_array
from backend.projects.access import projects_visible_to
from backend.projects.models import LabelSet

if TYPE_CHECKING:  # annotations only
    from django.contrib.auth.models import User


def pools_with_counts(pools: QuerySet[Pool]) -> QuerySet[Pool]:
    return pools.annotate(n_scans=Count("scans", distinct=True)).order_by("name")


def pool_scans(pool: Pool) -> QuerySet[Scan]:
    return pool.scans.order_by("name", "id")


def _axial_slice(volume: np.ndarray, z: int, *, scan: Scan, what: str) -> np.ndarray:
    depth = volume.shape[0]
    if not 0 <= z < depth:
        msg = (f"Slice z={z} is outside the {what} of scan {scan.pk}, which has {depth} axial slices "
               f"(z from 0 to {depth - 1}).")
        raise Http404(msg)
    return volume[z]


def scan_slice(scan: Scan, z: int) -> np.ndarray:
    """Axial slice ``z`` of the working-grid volume: (Y, X) int16 HU; 404 when out of range."""
    if scan.status != Scan.Status.READY or not scan.volume:
        raise Http404(f"Scan {scan.pk} has no volume: its import {scan.status}.")
    return _axial_slice(scan_volume(scan), z, scan=scan, what="volume")


def scan_reference(scan: Scan, *, label_set_id: int | None = None) -> ReferenceLabelMap:
    """The scan's reference label map (of ``label_set_id`` when given, else the oldest); 404 if none."""
    references = scan.reference_labels.select_related("label_set").order_by("created", "id")
    if label_set_id is not None:
        references = references.filter(label_set_id=label_set_id)
    reference = references.first()
    if reference is None:
        which = f" for label set {label_set_id}" if label_set_id is not None else ""
        raise Http404(f"Scan {scan.pk} has no reference label map{which}; import one with the scan.")
    return reference


def reference_slice(reference: ReferenceLabelMap, z: int) -> np.ndarray:
    """Axial slice ``z`` of a reference label map: (Y, X) uint8; 404 when out of range."""
    return _axial_slice(reference_labels(reference), z, scan=reference.scan, what="reference label map")


def label_colours(label_set: LabelSet) -> dict[int, str]:
    return dict(label_set.labels.values_list("value", "colour"))


def scan_uncertainty_file(scan: Scan, *, user: User, project_id: int | None = None) -> FieldFile | None:
    """The newest stored pixel-uncertainty volume of ``scan`` that ``user`` may see, or None.

    Today the only source is a finished on-demand segmentation (``acquisition.Segmentation``)
    of a project visible to the user; a dedicated per-step uncertainty map can be looked up
    here first once it exists. The file is a .npy float (z, y, x) on the scan's working grid.
    """
    if not apps.is_installed("backend.acquisition"):
        return None
    segmentation_model = apps.get_model("acquisition", "Segmentation")
    segmentations = (segmentation_model.objects
                     .filter(scan=scan, status="done", project__in=projects_visible_to(user))
                     .exclude(uncertainty="").order_by("-finished", "-id"))
    if project_id is not None:
        segmentations = segmentations.filter(project_id=project_id)
    found = segmentations.first()
    return found.uncertainty if found else None


def uncertainty_slice(scan: Scan, z: int, *, user: User, project_id: int | None = None) -> np.ndarray:
    """Axial slice ``z`` of the scan's pixel uncertainty: (Y, X) float32; 404 if none exists yet."""
    source = scan_uncertainty_file(scan, user=user, project_id=project_id)
    if source is None:
        msg = (f"No uncertainty map exists for scan {scan.pk} yet: one is stored once a model of a project "
               "using this scan has segmented it.")
        raise Http404(msg)
    return _axial_slice(stored_array(source), z, scan=scan, what="uncertainty map").astype(np.float32)
