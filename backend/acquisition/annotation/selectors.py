"""Reads of the annotation phase: the answered slices around a query, for copying and interpolating."""

from __future__ import annotations

from backend.acquisition.models import HeldOutSlice, Query, TrainingSlice


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
