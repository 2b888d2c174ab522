"""Reads of the step lifecycle: phases whose runner is gone, what a tau would cost."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils import timezone

from backend.acquisition import codec, ml_adapter
from backend.acquisition.errors import StepConflict
from backend.acquisition.models import AcquisitionStep
from backend.acquisition.states import WORKER_PHASES
from backend.acquisition.steps.leases import lease_gone

if TYPE_CHECKING:  # annotations only
    from backend.projects.models import Project


def orphaned_phases(now=None) -> list[tuple[AcquisitionStep, str]]:
    """Steps whose worker phase is held by a runner that is gone, each with why (leases.lease_gone)."""
    now = now or timezone.now()
    held = AcquisitionStep.objects.filter(state__in=WORKER_PHASES).exclude(runner="").order_by("id")
    found = ((step, lease_gone(step.runner, step.heartbeat, now)) for step in held)
    return [(step, why) for step, why in found if why]


def tau_preview(project: Project, tau: float, *, target_mac: float | None = None) -> dict:
    """How many pixels ``tau`` would query in the latest selected slices (and the tau of a target MAC).

    StepConflict ``no_maps`` before any step has selected slices.
    """
    step = (AcquisitionStep.objects.filter(project=project, queries__isnull=False)
            .order_by("-number").distinct().first())
    if step is None:
        raise StepConflict("no uncertainty maps yet: run a step up to its selection first", code="no_maps")
    maps = [codec.unpack_float16(q.uncertainty, (q.height, q.width)) for q in step.queries.all()]
    return ml_adapter.preview_tau(maps, tau, target_mac=target_mac) | {"slices": len(maps), "step": step.number}
