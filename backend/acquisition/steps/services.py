"""Writes of the step lifecycle: start, transitions, cancel, fail, phase leases, recovery."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from backend.acquisition.errors import StepConflict
from backend.acquisition.events import publish_state
from backend.acquisition.models import AcquisitionStep, Query
from backend.acquisition.states import (
    FINAL,
    GPU_QUEUE,
    PHASE_TASKS,
    WORKER_PHASES,
    State,
    check_transition,
)
from backend.acquisition.steps.leases import LEASE_SECONDS, Runner, lease_gone
from backend.acquisition.steps.selectors import orphaned_phases
from backend.core import jobs

if TYPE_CHECKING:  # annotations only
    from django.contrib.auth.models import User

    from backend.projects.models import Project

log = logging.getLogger(__name__)


def _now():
    return timezone.now()


def enqueue_phase(step: AcquisitionStep) -> None:
    """Schedule the task of the step's current phase once the transaction commits."""
    if step.state not in WORKER_PHASES:
        return
    name, step_id = PHASE_TASKS[step.state], step.id
    transaction.on_commit(lambda: jobs.send(name, step_id, queue=GPU_QUEUE))


def _record(step: AcquisitionStep, target: str, reason: str = "") -> None:
    check_transition(step.state, target)
    step.state = target
    step.runner = ""
    step.percent = 0.0
    step.eta_seconds = None
    step.subphase, step.subphase_percent, step.subphase_eta_seconds = "", 0.0, None
    if reason:
        step.reason = reason
    if target in FINAL:
        step.finished = _now()
    step.transitions = [*step.transitions, {"state": target, "at": _now().isoformat()}]


@transaction.atomic
def step_transition(*, step: AcquisitionStep, target: str, reason: str = "") -> AcquisitionStep:
    """Move ``step`` to ``target`` (IllegalTransition if not an edge), save, publish, schedule."""
    _record(step, target, reason)
    step.save()
    if target in (State.CANCELLED, State.FAILED):
        Query.objects.filter(step=step, status=Query.Status.OPEN).update(
            status=Query.Status.WITHDRAWN, assignee=None, lock_expires=None)
    enqueue_phase(step)
    transaction.on_commit(lambda: publish_state(step))
    return step


@transaction.atomic
def step_annotating_done(*, step_id: int) -> bool:
    """Move an annotating step without open queries to training; the one place that does.

    Safe to call from every place that may have closed the last query (an answer, a claim
    that finds nothing left, a selection whose queries all answered themselves): the row
    lock makes exactly one caller move it. True if this call moved it.
    """
    step = AcquisitionStep.objects.select_for_update().get(pk=step_id)
    if step.state != State.ANNOTATING or Query.objects.filter(step_id=step_id, status=Query.Status.OPEN).exists():
        return False
    step_transition(step=step, target=State.TRAINING)
    return True


@transaction.atomic
def step_start(*, project: Project, user: User, force: bool = False) -> AcquisitionStep:
    """Start the next acquisition step of ``project`` with its current configuration.

    Raises StepConflict when another step is unfinished, when no pool holds a ready
    scan, or when the stopping rule held after the last step (unless ``force``). An
    empty training set is no obstacle: that step is a cold start (steps/coldstart.py).
    """
    type(project).objects.select_for_update().get(pk=project.pk)  # one start at a time per project
    running = AcquisitionStep.objects.filter(project=project).exclude(state__in=FINAL).first()
    if running is not None:
        raise StepConflict(f"step {running.number} is still {running.state}; finish or cancel it first",
                           code="step_running")
    if not project.pools.filter(scans__status="ready").exists():
        raise StepConflict("the project has no pool with a ready scan; add a pool first", code="no_pool")
    last = AcquisitionStep.objects.filter(project=project, state=State.DONE).order_by("-number").first()
    if last is not None and last.stop_reached and not force:
        raise StepConflict(f"the stopping rule held after step {last.number} (every muscle's predicted Dice >= "
                           f"{project.stop_target_dice}); start with force=true to continue anyway",
                           code="stop_reached")
    # Steps count steps; models are numbered apart, in the order they are made (an import, an
    # imported model adapted inside step 1, each step's model: phases._save_version).
    number = (AcquisitionStep.objects.filter(project=project).aggregate(m=Max("number"))["m"] or 0) + 1
    step = AcquisitionStep.objects.create(
        project=project, number=number, strategy=project.strategy, tau=project.tau,
        slices_per_step=project.slices_per_step, k_uncertain=project.k_uncertain,
        mc_samples=project.mc_samples, started_by=user,
        transitions=[{"state": State.CREATED, "at": _now().isoformat()}],
    )
    return step_transition(step=step, target=State.INFERRING)


@transaction.atomic
def step_cancel(*, step: AcquisitionStep, user: User, reason: str = "") -> AcquisitionStep:
    """Cancel now unless a live worker holds the phase; then flag it and the worker stops at its next report."""
    step = AcquisitionStep.objects.select_for_update().get(pk=step.pk)
    if step.state in FINAL:
        raise StepConflict(f"step {step.number} is already {step.state}", code="step_final")
    why = reason or f"cancelled by {user}"
    # Only a live runner can acknowledge the flag; a phase whose runner is gone is cancelled now.
    if step.state in WORKER_PHASES and step.runner and lease_gone(step.runner, step.heartbeat, _now()) is None:
        step.cancel_requested = True
        step.reason = why
        step.save(update_fields=["cancel_requested", "reason", "updated"])
        return step
    return step_transition(step=step, target=State.CANCELLED, reason=why)


@transaction.atomic
def step_fail(*, step_id: int, reason: str) -> AcquisitionStep | None:
    step = AcquisitionStep.objects.select_for_update().get(pk=step_id)
    if step.state in FINAL:
        return None
    return step_transition(step=step, target=State.FAILED, reason=reason[:2000])


class Claim(StrEnum):
    TAKEN = "taken"
    DONE = "done"  # the step is no longer in the phase
    HELD = "held"  # a live runner holds the phase


def step_claim_phase(*, step_id: int, phase: str, runner: str) -> Claim:
    """Take the lease of ``phase`` for ``runner``: free, already ours, or its runner gone (leases.py).

    The UPDATE is conditional on the runner and heartbeat just read, so of two deliveries
    racing for an orphaned phase exactly one takes it, and a runner that reported in
    between keeps it.
    """
    row = AcquisitionStep.objects.filter(pk=step_id, state=phase).values("runner", "heartbeat").first()
    if row is None:
        return Claim.DONE
    now = _now()
    gone = None
    if row["runner"] not in ("", runner):
        gone = lease_gone(row["runner"], row["heartbeat"], now)
        if gone is None:
            return Claim.HELD
    taken = (AcquisitionStep.objects.filter(pk=step_id, state=phase, runner=row["runner"], heartbeat=row["heartbeat"])
             .update(runner=runner, heartbeat=now))
    if not taken:
        return Claim.HELD
    if gone:
        log.warning("step %s: %s taken over by %s: %s", step_id, phase, Runner.parse(runner).describe(), gone)
    return Claim.TAKEN


def step_renew_lease(*, step_id: int, phase: str, runner: str) -> bool:
    """The heartbeat alone (leases.HEARTBEAT_EVERY); False once the lease is no longer ours."""
    return AcquisitionStep.objects.filter(pk=step_id, state=phase, runner=runner).update(heartbeat=_now()) == 1


def step_heartbeat(*, step_id: int, phase: str, runner: str, percent: float, eta: float | None,
                   subphase: tuple[str, float, float | None] = ("", 0.0, None)) -> bool:
    """Record progress (of the phase, and of its named sub-phase: name, percent, ETA); False
    when the worker must stop (cancel requested, or the lease was lost)."""
    name, sub_percent, sub_eta = subphase
    updated = (AcquisitionStep.objects.filter(pk=step_id, state=phase, runner=runner, cancel_requested=False)
               .update(heartbeat=_now(), percent=round(percent, 2), eta_seconds=eta, subphase=name,
                       subphase_percent=round(sub_percent, 2), subphase_eta_seconds=sub_eta))
    return updated == 1


@transaction.atomic
def step_cancel_acknowledge(*, step_id: int, phase: str) -> None:
    """The worker stopped because of a cancel: finish the cancellation."""
    step = AcquisitionStep.objects.select_for_update().get(pk=step_id)
    if step.state == phase and step.cancel_requested:
        step_transition(step=step, target=State.CANCELLED, reason=step.reason or "cancelled")


def _reschedule(step: AcquisitionStep) -> bool:
    """Free the lease of ``step`` (if still held by the runner read) and send its phase again."""
    with transaction.atomic():
        freed = AcquisitionStep.objects.filter(pk=step.pk, state=step.state, runner=step.runner).update(runner="")
        if not freed:
            return False
        step.refresh_from_db()
        if step.cancel_requested:  # nobody is left to acknowledge the cancel
            step_transition(step=step, target=State.CANCELLED, reason=step.reason or "cancelled")
        else:
            enqueue_phase(step)
    return True


def steps_resume_stalled(*, live_workers: set[str], me: str) -> list[int]:
    """Re-schedule worker phases whose runner is gone (called when a worker starts).

    A phase is orphaned when its lease is gone (leases.lease_gone), when its runner's
    worker is not alive (``live_workers``: node names answering a ping) or is this very
    worker name (it just started, so any earlier process with the name is dead), or
    when nobody claimed it (its message was lost with a killed worker). Duplicates are
    harmless: phases are idempotent.
    """
    resumed = []
    for step in AcquisitionStep.objects.filter(state__in=WORKER_PHASES):
        node = Runner.parse(step.runner).node
        if (step.runner and node in live_workers and node != me
                and lease_gone(step.runner, step.heartbeat, _now()) is None):
            continue
        if _reschedule(step):
            resumed.append(step.id)
    return resumed


def steps_take_over_orphans(*, me: str) -> list[int]:
    """Re-schedule phases whose runner is gone (every worker runs this periodically).

    This covers workers that vanished whole (their messages come back only after the
    broker's visibility timeout). The worker's own pool children are left to their
    redelivered task until their lease has also expired, so the phase is resumed by that
    delivery, not by a second message.
    """
    resumed = []
    for step, _why in orphaned_phases():
        heartbeat_age = (_now() - step.heartbeat).total_seconds() if step.heartbeat else None
        if Runner.parse(step.runner).node == me and heartbeat_age is not None and heartbeat_age <= LEASE_SECONDS:
            continue
        if _reschedule(step):
            resumed.append(step.id)
    return resumed
