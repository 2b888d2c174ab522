"""Reads of the annotation phase: the answered slices around a query (to copy and interpolate) and the
coronal and sagittal planes through its scan (the anatomy around it)."""

from __future__ import annotations

import numpy as np

from backend.acquisition.models import HeldOutSlice, Query, TrainingSlice
from backend.imaging.volumes import scan_volume


def answered_slices_near(query: Query) -> list[TrainingSlice]:
    """The project's labelled slices of the query's scan nearest below and above the query's slice.

    At most one each side, never the query's own slice nor a held-out one (held-out labels measure
    accuracy: copied into an answer they would be trained on). Ordered by z.
    """
    project_id = query.step.project_id
    held = HeldOutSlice.objects.filter(project_id=project_id, scan_id=query.scan_id).values_list("z", flat=True)
    rows = (TrainingSlice.objects.filter(project_id=project_id, scan_id=query.scan_id,
                                         height=query.height, width=query.width)
            .exclude(z=query.z).exclude(z__in=list(held)))
    below = rows.filter(z__lt=query.z).order_by("-z").first()
    above = rows.filter(z__gt=query.z).order_by("z").first()
    return [s for s in (below, above) if s is not None]


PLANES = {"coronal": 1, "sagittal": 2}  # the volume axis (z, y, x) held fixed


def query_reformat(query: Query, plane: str, at: int) -> np.ndarray:
    """The coronal (``at`` = y) or sagittal (``at`` = x) plane through the query's scan: (Z, X) or (Z, Y)
    int16 HU on the working grid. ValueError with a sentence when ``at`` lies outside the scan."""
    volume = scan_volume(query.scan)
    axis = PLANES[plane]
    size = volume.shape[axis]
    if not 0 <= at < size:
        raise ValueError(f"{plane} plane {at} is outside the scan, whose {'y' if axis == 1 else 'x'} runs from "
                         f"0 to {size - 1}")
    return np.ascontiguousarray(volume[:, at, :] if axis == 1 else volume[:, :, at])
