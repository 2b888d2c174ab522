"""Reads of the acquisition app: pool slices, current model, MAC and annotation-time summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Count, F, Q, QuerySet, Sum

from backend.acquisition.models import (
    AcquisitionStep,
    HeldOutSlice,
    ModelVersion,
    Query,
    TrainingSlice,
)
from backend.acquisition.states import State

if TYPE_CHECKING:  # annotations only
    from backend.projects.models import Project


def pool_scans(project: Project) -> QuerySet:
    """Ready scans of the project's pools, test scans excluded, in id order."""
    from backend.imaging.models import Scan

    return (Scan.objects.filter(pool__in=project.pools.all(), status=Scan.Status.READY)
            .exclude(id__in=project.test_scans.values("id")).distinct().order_by("id"))


def current_model(project: Project) -> ModelVersion | None:
    """The newest model version of the project (the one that segments on demand)."""
    return ModelVersion.objects.filter(project=project).order_by("-number").first()


def steps_of(project: Project) -> QuerySet:
    return AcquisitionStep.objects.filter(project=project).select_related("model_version").order_by("number")


def _mac_row(rows) -> dict:
    queried = rows.get("queried") or 0
    pixels = rows.get("pixels") or 0
    return {
        "queries": rows.get("queries") or 0,
        "answered": rows.get("answered") or 0,
        "queried_pixels": queried,
        "slice_pixels": pixels,
        "mac": queried / pixels if pixels else None,
        "seconds_spent": rows.get("seconds") or 0.0,
        # Eq. 7's auto-labels (under the step's guard) and, where a reference exists, the wrong ones.
        "auto_labelled_pixels": rows.get("auto") or 0,
        "auto_labelled_wrong": rows.get("auto_wrong"),
        # The annotators' input events (Query.input_events) and the queried pixels of the answers that
        # reported them: their ratio is the input cost of an answered pixel (docs/annotator.md).
        "input_events": rows.get("inputs") or 0,
        "input_pixels": rows.get("input_pixels") or 0,
    }


_AGG = {
    "queries": Count("id"),
    "answered": Count("id", filter=Q(status=Query.Status.ANSWERED)),
    "queried": Sum("n_queried"),
    "pixels": Sum("n_pixels"),
    "seconds": Sum("seconds_spent"),
    "auto": Sum("n_auto_labelled"),
    "auto_wrong": Sum("n_auto_wrong"),
    "inputs": Sum("input_events"),
    "input_pixels": Sum("n_queried", filter=Q(input_events__isnull=False)),
}


def mac_summary(project: Project) -> dict:
    """MAC (Eq. 8: queried / all pixels of the added slices) and time, per step, annotator and project.

    Withdrawn queries (cancelled steps) are left out: their slices were never added.
    """
    queries = Query.objects.filter(step__project=project).exclude(status=Query.Status.WITHDRAWN)
    per_step = [
        {"step": row["step__number"], "step_id": row["step_id"], **_mac_row(row)}
        for row in queries.values("step_id", "step__number").annotate(**_AGG).order_by("step__number")
    ]
    answered = queries.filter(status=Query.Status.ANSWERED, answered_by__isnull=False)
    per_annotator = [
        {"user": row["answered_by"], "username": row["username"], **_mac_row(row)}
        for row in answered.values("answered_by").annotate(username=F("answered_by__username"), **_AGG)
        .order_by("answered_by")
    ]
    return {"project": _mac_row(queries.aggregate(**_AGG)), "steps": per_step, "annotators": per_annotator}


def step_mac(step) -> dict:
    return _mac_row(Query.objects.filter(step=step).exclude(status=Query.Status.WITHDRAWN).aggregate(**_AGG))


def training_set_summary(project: Project) -> dict:
    """How many training slices, from where; answers of cancelled steps are kept (expert work) and counted."""
    rows = TrainingSlice.objects.filter(project=project)
    return {
        "slices": rows.count(),
        "from_references": rows.filter(source=TrainingSlice.Source.REFERENCE).count(),
        "from_queries": rows.filter(source=TrainingSlice.Source.QUERY).count(),
        "from_cancelled_steps": rows.filter(step__state=State.CANCELLED).count(),
        "held_out": HeldOutSlice.objects.filter(project=project).count(),
    }
