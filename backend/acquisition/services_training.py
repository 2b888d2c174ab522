"""Writes of the training set and of the lead's acquisition settings."""

from __future__ import annotations

import numpy as np
from django.db import transaction

from backend.acquisition import codec, engine
from backend.acquisition.models import TrainingSlice
from backend.acquisition.selectors import pool_scans
from backend.acquisition.services_steps import StepConflict


def _evenly_spaced(zs: list[int], fraction: float | None) -> list[int]:
    if fraction is None or not zs:
        return sorted(zs)
    count = max(1, int(round(fraction * len(zs))))
    picks = np.linspace(0, len(zs) - 1, count + 2)[1:-1] if count < len(zs) else np.arange(len(zs))
    return sorted({sorted(zs)[int(round(p))] for p in picks})


@transaction.atomic
def training_set_seed(*, project, fraction: float | None = None) -> int:
    """Add reference-labelled slices of the pool scans to the training set; returns how many were added.

    ``fraction`` None takes every labelled slice of each reference label map; a
    fraction f takes about f x (labelled slices) evenly spaced ones per scan (the
    paper's simulation starts from 5 %). Slices already in the set are kept.
    """
    from backend.imaging.models import ReferenceLabelMap

    added = 0
    for scan in pool_scans(project):
        ref = ReferenceLabelMap.objects.filter(scan=scan, label_set=project.label_set).first()
        if ref is None:
            continue
        labelled = list(ref.labelled_slices) or list(range(scan.shape[0]))
        have = set(TrainingSlice.objects.filter(project=project, scan=scan).values_list("z", flat=True))
        wanted = [z for z in _evenly_spaced(labelled, fraction) if z not in have]
        if not wanted:
            continue
        labels = engine.reference_labels(ref)
        rows = []
        for z in wanted:
            sl = labels[z]
            rows.append(TrainingSlice(
                project=project, scan=scan, z=z, height=sl.shape[0], width=sl.shape[1],
                labels=codec.pack_labels(sl), answered=codec.pack_mask(np.ones(sl.shape, bool)),
                source=TrainingSlice.Source.REFERENCE))
        TrainingSlice.objects.bulk_create(rows)
        added += len(rows)
    if added == 0 and not TrainingSlice.objects.filter(project=project).exists():
        raise StepConflict("no pool scan has a reference label map for the project's label set; "
                           "import labels for a few pool scans first", code="no_reference")
    return added


ACQUISITION_FIELDS = ("strategy", "tau", "slices_per_step", "k_uncertain", "mc_samples", "stop_target_dice")


@transaction.atomic
def project_acquisition_configure(*, project, **changes):
    """Set the lead's acquisition controls (strategy, tau, slices per step, stopping rule...)."""
    unknown = set(changes) - set(ACQUISITION_FIELDS)
    if unknown:
        raise ValueError(f"not acquisition settings: {sorted(unknown)}")
    for name, value in changes.items():
        setattr(project, name, value)
    project.full_clean(exclude=["label_set", "created_by"])
    project.save(update_fields=list(changes))
    return project
