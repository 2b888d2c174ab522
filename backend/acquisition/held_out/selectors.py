"""Reads of the held-out slices: which slices, which are off limits for training, the lead's summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.acquisition import ml_adapter
from backend.acquisition.models import HeldOutSlice, TrainingSlice

if TYPE_CHECKING:  # annotations only
    from backend.projects.models import Project

# Neighbouring CT slices 1 mm apart look almost alike: a training slice right next to a
# held-out one would let the model see its test. The held-out slice and this many slices
# on each side are never seeded, queried or trained on.
HELD_OUT_MARGIN = ml_adapter.HELD_OUT_MARGIN  # the simulation's too (mltasks.held_out)


def held_out_by_scan(project: Project) -> dict[int, list[int]]:
    """{scan id: sorted z of its held-out slices}."""
    out: dict[int, list[int]] = {}
    for scan_id, z in HeldOutSlice.objects.filter(project=project).order_by("scan_id", "z").values_list("scan_id", "z"):
        out.setdefault(scan_id, []).append(z)
    return out


def held_out_excluded(project: Project) -> set[tuple[int, int]]:
    """(scan id, z) of every slice that must stay out of the training set: the held-out
    slices and their neighbours within ``HELD_OUT_MARGIN``."""
    return {(scan_id, z + d) for scan_id, zs in held_out_by_scan(project).items() for z in zs
            for d in range(-HELD_OUT_MARGIN, HELD_OUT_MARGIN + 1)}


def evaluation_set(project: Project) -> str | None:
    """What each step's model is evaluated on: "test_scans" when a test scan has reference
    labels of the project's label set, else "held_out_slices" when slices are held out, else None."""
    from backend.imaging.models import ReferenceLabelMap

    if ReferenceLabelMap.objects.filter(scan__in=project.test_scans.all(), label_set=project.label_set).exists():
        return "test_scans"
    if HeldOutSlice.objects.filter(project=project).exists():
        return "held_out_slices"
    return None


def held_out_summary(project: Project) -> dict:
    """The held-out slices of a project for the lead: per scan, which z; and whether they are used."""
    from backend.imaging.models import Scan

    by_scan = held_out_by_scan(project)
    scans = Scan.objects.in_bulk(list(by_scan))
    used = evaluation_set(project)
    if used == "test_scans":
        note = ("Not used while the project has test scans with reference labels: each step's model is "
                "evaluated on those whole scans. The held-out slices still stay out of training.")
    elif used == "held_out_slices":
        note = ("Each step's model is evaluated on these slices. Slices of one CT are correlated: treat the "
                "figures as an estimate for this patient, not for new patients (docs/acquisition.md).")
    else:
        note = "No slice is held out: hold out a few labelled slices of each pool scan to measure accuracy."
    return {
        "slices": sum(len(zs) for zs in by_scan.values()),
        "margin": HELD_OUT_MARGIN,
        "evaluation_set": used,
        "note": note,
        "scans": [{"scan": scan_id, "name": scans[scan_id].name, "depth": int(scans[scan_id].shape[0]), "z": zs}
                  for scan_id, zs in by_scan.items()],
    }


def test_scan_conflicts(project: Project, scans: list) -> list[str]:
    """Why scans may not become test scans of ``project``: a test scan must never have been
    trained on, and its held-out slices would no longer be in the pool (``projects.services``)."""
    problems = []
    for scan in scans:
        trained = TrainingSlice.objects.filter(project=project, scan=scan).count()
        held = HeldOutSlice.objects.filter(project=project, scan=scan).count()
        if trained:
            problems.append(
                f"Scan {scan.pk} ({scan.name}) has {trained} slice(s) in the project's training set, so a model "
                "has learnt from it and it cannot measure accuracy as a test scan. Hold out slices of it instead "
                "(POST /api/projects/<id>/held-out/).")
        if held:
            problems.append(
                f"Scan {scan.pk} ({scan.name}) has {held} held-out slice(s); a test scan leaves the pool. "
                "Clear the held-out slices first (DELETE /api/projects/<id>/held-out/) if it should be a whole "
                "test scan.")
    return problems
