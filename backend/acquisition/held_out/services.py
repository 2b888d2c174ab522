"""Writes of the held-out slices: choose them along each pool scan, or clear them.

Why: a lab that starts a study has one CT and no separate labelled test scan, so
accuracy is measured on labelled slices of the pool scans kept out of training and
queries (docs/acquisition.md, "Measuring accuracy").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from django.db import transaction

from backend.acquisition import ml_adapter
from backend.acquisition.errors import StepConflict
from backend.acquisition.held_out.selectors import HELD_OUT_MARGIN, held_out_summary
from backend.acquisition.models import AcquisitionStep, HeldOutSlice, TrainingSlice
from backend.acquisition.selectors import pool_scans
from backend.acquisition.states import FINAL

if TYPE_CHECKING:  # annotations only
    from backend.projects.models import Project

MAX_PER_SCAN = 100


def _no_step_running(project: Project) -> None:
    running = AcquisitionStep.objects.filter(project=project).exclude(state__in=FINAL).first()
    if running is not None:
        raise StepConflict(f"step {running.number} is {running.state}; change the held-out slices once it is "
                           "done or cancelled (its evaluation reads them)", code="step_running")


def _candidates(project: Project, scan, ref) -> tuple[list[int], str]:
    """Labelled slices of ``scan`` with at least one structure, away from its training slices;
    and, when there is none, why (for the lead)."""
    labelled = sorted(ref.labelled_slices) if ref.labelled_slices else list(range(scan.shape[0]))
    trained = set(TrainingSlice.objects.filter(project=project, scan=scan).values_list("z", flat=True))
    blocked = {z + d for z in trained for d in range(-HELD_OUT_MARGIN, HELD_OUT_MARGIN + 1)}
    labels = ml_adapter.reference_labels(ref)
    free = [z for z in labelled if z not in blocked and np.asarray(labels[z]).any()]
    if free:
        return free, ""
    return [], (f"scan {scan.pk} ({scan.name}): every one of its {len(labelled)} labelled slices is in the "
                f"training set, within {HELD_OUT_MARGIN} slice(s) of one, or shows no structure")


@transaction.atomic
def held_out_choose(*, project: Project, per_scan: int) -> dict:
    """Hold out ``per_scan`` labelled slices of every pool scan with a reference label map,
    spread along the scan, replacing the project's current held-out slices.

    Only slices with a structure in the reference, not in the training set and not next
    to a training slice qualify. StepConflict when a step is unfinished (``step_running``)
    or when no slice qualifies (``no_held_out_candidates``, saying why per scan).
    """
    from backend.imaging.models import ReferenceLabelMap

    if not 1 <= per_scan <= MAX_PER_SCAN:
        raise ValueError(f"per_scan must be between 1 and {MAX_PER_SCAN}")
    type(project).objects.select_for_update().get(pk=project.pk)  # one change at a time per project
    _no_step_running(project)
    HeldOutSlice.objects.filter(project=project).delete()
    rows, why = [], []
    for scan in pool_scans(project):
        ref = ReferenceLabelMap.objects.filter(scan=scan, label_set=project.label_set).first()
        if ref is None:
            continue
        candidates, reason = _candidates(project, scan, ref)
        if reason:
            why.append(reason)
        rows += [HeldOutSlice(project=project, scan=scan, z=z) for z in ml_adapter.spread(candidates, per_scan)]
    if not rows:
        raise StepConflict(_nothing_to_hold_out(project, why), code="no_held_out_candidates")
    HeldOutSlice.objects.bulk_create(rows)
    return held_out_summary(project)


def _nothing_to_hold_out(project: Project, why: list[str]) -> str:
    if why:
        return ("no slice can be held out: " + "; ".join(why) + ". Hold out slices before seeding the training "
                "set, or seed it with a fraction (POST training-set/seed/ {\"fraction\": 0.1}) so labelled "
                "slices stay free.")
    tests = list(project.test_scans.values_list("pk", "name"))
    where = (f" The reference labels may be on test scans ({', '.join(f'{pk} ({name})' for pk, name in tests)}), "
             "which are not in the pool.") if tests else ""
    return ("no pool scan has a reference label map for the project's label set, so no labelled slice can be "
            f"held out; import labels for a pool scan first.{where}")


@transaction.atomic
def held_out_clear(*, project: Project) -> int:
    """Remove every held-out slice of the project (they may then be seeded or queried); returns how many."""
    type(project).objects.select_for_update().get(pk=project.pk)
    _no_step_running(project)
    deleted, _ = HeldOutSlice.objects.filter(project=project).delete()
    return deleted
