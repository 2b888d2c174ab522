"""Writes of the training set (seeded, answered, or taken as predicted) and of the lead's acquisition settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from django.db import transaction
from django.utils import timezone

from backend.acquisition import codec, ml_adapter
from backend.acquisition.errors import StepConflict
from backend.acquisition.held_out.selectors import held_out_excluded
from backend.acquisition.models import AcquisitionStep, Query, TrainingSlice
from backend.acquisition.selectors import pool_scans

if TYPE_CHECKING:  # annotations only
    from backend.projects.models import Project


def _evenly_spaced(zs: list[int], fraction: float | None) -> list[int]:
    if fraction is None or not zs:
        return sorted(zs)
    count = max(1, int(round(fraction * len(zs))))
    picks = np.linspace(0, len(zs) - 1, count + 2)[1:-1] if count < len(zs) else np.arange(len(zs))
    return sorted({sorted(zs)[int(round(p))] for p in picks})


@transaction.atomic
def training_set_seed(*, project: Project, fraction: float | None = None) -> int:
    """Add reference-labelled slices of the pool scans to the training set; returns how many were added.

    ``fraction`` None takes every labelled slice of each reference label map; a
    fraction f takes about f x (labelled slices) evenly spaced ones per scan (the
    paper's simulation starts from 5 %). Slices already in the set are kept; held-out
    slices and their neighbours are never added (``held_out.selectors``).
    """
    from backend.imaging.models import ReferenceLabelMap

    added = 0
    excluded = held_out_excluded(project)
    for scan in pool_scans(project):
        ref = ReferenceLabelMap.objects.filter(scan=scan, label_set=project.label_set).first()
        if ref is None:
            continue
        labelled = [z for z in (list(ref.labelled_slices) or list(range(scan.shape[0])))
                    if (scan.id, z) not in excluded]
        have = set(TrainingSlice.objects.filter(project=project, scan=scan).values_list("z", flat=True))
        wanted = [z for z in _evenly_spaced(labelled, fraction) if z not in have]
        if not wanted:
            continue
        labels = ml_adapter.reference_labels(ref)
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
        raise StepConflict(_no_reference_why(project, excluded), code="no_reference")
    return added


def _no_reference_why(project: Project, excluded: set) -> str:
    """Why seeding found nothing, naming the real cause: labels on test scans (not in the
    pool), every labelled slice held out, or no labels at all."""
    from backend.imaging.models import ReferenceLabelMap

    refs = ReferenceLabelMap.objects.filter(label_set=project.label_set)
    on_tests = [f"{r.scan_id} ({r.scan.name})" for r in refs.filter(scan__in=project.test_scans.all())
                .select_related("scan").order_by("scan_id")]
    in_pool = refs.filter(scan__in=pool_scans(project)).exists()
    if in_pool and excluded:
        return ("every labelled slice of the pool scans is held out for evaluation or next to a held-out slice; "
                "hold out fewer slices per scan (POST held-out/ {\"per_scan\": 2}) so some can seed the "
                "training set")
    if on_tests:
        return (f"the reference labels are on test scan(s) {', '.join(on_tests)}, and a test scan is not in the "
                "pool: it is never trained on. To train on a lab's only CT, remove it from the project's test "
                "scans (PATCH /api/projects/<id>/ {\"test_scans\": []}) and hold out slices of it for "
                "evaluation instead (POST held-out/)")
    return ("no pool scan has a reference label map for the project's label set; "
            "import labels for a few pool scans first")


ACQUISITION_FIELDS = ("strategy", "tau", "slices_per_step", "k_uncertain", "mc_samples", "stop_target_dice")


@transaction.atomic
def project_acquisition_configure(*, project: Project, **changes):
    """Set the lead's acquisition controls (strategy, tau, slices per step, stopping rule...)."""
    unknown = set(changes) - set(ACQUISITION_FIELDS)
    if unknown:
        raise ValueError(f"not acquisition settings: {sorted(unknown)}")
    for name, value in changes.items():
        setattr(project, name, value)
    project.full_clean(exclude=["label_set", "created_by"])
    project.save(update_fields=list(changes))
    return project


def training_set_add(query: Query, merged: np.ndarray, answered: np.ndarray) -> None:
    """The query's slice joins the training set: ``merged`` (H, W) labels, ``answered`` (H, W) bool."""
    # One INSERT ... ON CONFLICT UPDATE on (project, scan, z) instead of update_or_create's
    # SELECT FOR UPDATE, savepoint and write.
    TrainingSlice.objects.bulk_create(
        [TrainingSlice(project_id=query.step.project_id, scan_id=query.scan_id, z=query.z, height=query.height,
                       width=query.width, labels=codec.pack_labels(merged), answered=codec.pack_mask(answered),
                       source=TrainingSlice.Source.QUERY, query=query, step_id=query.step_id)],
        update_conflicts=True, unique_fields=["project", "scan", "z"],
        update_fields=["height", "width", "labels", "answered", "source", "query", "step"])


def queries_auto_answer_empty(*, step: AcquisitionStep) -> int:
    """Queries with no queried pixel need nobody: their prediction joins the training set as is."""
    n = 0
    for query in Query.objects.filter(step=step, status=Query.Status.OPEN, n_queried=0):
        shape = (query.height, query.width)
        Query.objects.filter(pk=query.pk).update(status=Query.Status.ANSWERED, answer=codec.pack_labels(
            np.zeros(0, np.uint8)), answered_at=timezone.now(), seconds_spent=0.0)
        training_set_add(query, codec.unpack_labels(query.predicted, shape), np.zeros(shape, bool))
        n += 1
    return n
