"""Writes of the step lifecycle: start, transitions, cancel, fail, phase leases, recovery."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from backend.acquisition.events import publish_state
from backend.acquisition.models import AcquisitionStep, Query, TrainingSlice
from backend.acquisition.states import FINAL, WORKER_PHASES, State, check_transition

# A phase whose runner has not reported for this long may be taken over by another worker.
STALL_SECONDS = 120


class StepConflict(ValidationError):
    """The request contradicts the project's current acquisition state (HTTP 409)."""


def _now():
    return timezone.now()


def enqueue_phase(step: AcquisitionStep) -> None:
    """Schedule the task of the step's current phase once the transaction commits."""
    if step.state not in WORKER_PHASES:
        return
    from backend.acquisition.tasks import PHASE_TASKS, send

    task = PHASE_TASKS[step.state]
    step_id = step.id
    transaction.on_commit(lambda: send(task, step_id))


def _record(step: AcquisitionStep, target: str, reason: str = "") -> None:
    check_transition(step.state, target)
    step.state = target
    step.runner = ""
    step.percent = 0.0
    step.eta_seconds = None
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
def step_start(*, project, user, force: bool = False) -> AcquisitionStep:
    """Start the next acquisition step of ``project`` with its current configuration.

    Raises StepConflict when another step is unfinished, when the training set is
    empty, or when the stopping rule held after the last step (unless ``force``).
    """
    type(project).objects.select_for_update().get(pk=project.pk)  # one start at a time per project
    running = AcquisitionStep.objects.filter(project=project).exclude(state__in=FINAL).first()
    if running is not None:
        raise StepConflict(f"step {running.number} is still {running.state}; finish or cancel it first",
                           code="step_running")
    if not TrainingSlice.objects.filter(project=project).exists():
        raise StepConflict("the training set is empty: seed it from reference label maps first "
                           "(POST /api/projects/<id>/training-set/seed/)", code="no_training_set")
    if not project.pools.filter(scans__status="ready").exists():
        raise StepConflict("the project has no pool with a ready scan; add a pool first", code="no_pool")
    last = AcquisitionStep.objects.filter(project=project, state=State.DONE).order_by("-number").first()
    if last is not None and last.stop_reached and not force:
        raise StepConflict(f"the stopping rule held after step {last.number} (every muscle's predicted Dice >= "
                           f"{project.stop_target_dice}); start with force=true to continue anyway",
                           code="stop_reached")
    number = (AcquisitionStep.objects.filter(project=project).aggregate(m=Max("number"))["m"] or 0) + 1
    step = AcquisitionStep.objects.create(
        project=project, number=number, strategy=project.strategy, tau=project.tau,
        slices_per_step=project.slices_per_step, k_uncertain=project.k_uncertain,
        mc_samples=project.mc_samples, started_by=user,
        transitions=[{"state": State.CREATED, "at": _now().isoformat()}],
    )
    return step_transition(step=step, target=State.INFERRING)


@transaction.atomic
def step_cancel(*, step: AcquisitionStep, user, reason: str = "") -> AcquisitionStep:
    """Cancel now if no worker holds the phase; otherwise flag it and the worker stops at its next report."""
    step = AcquisitionStep.objects.select_for_update().get(pk=step.pk)
    if step.state in FINAL:
        raise StepConflict(f"step {step.number} is already {step.state}", code="step_final")
    why = reason or f"cancelled by {user}"
    if step.state in WORKER_PHASES and step.runner:
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


def step_claim_phase(*, step_id: int, phase: str, runner: str) -> bool:
    """Take the lease of ``phase`` for ``runner``; False when the phase is done or alive elsewhere.

    A conditional UPDATE, so two deliveries of one task never run a phase together.
    """
    now = _now()
    stale = now - timedelta(seconds=STALL_SECONDS)
    taken = (AcquisitionStep.objects.filter(pk=step_id, state=phase)
             .filter(Q(runner="") | Q(runner=runner) | Q(heartbeat__lt=stale) | Q(heartbeat=None))
             .update(runner=runner, heartbeat=now))
    return taken == 1


def step_heartbeat(*, step_id: int, phase: str, runner: str, percent: float, eta: float | None) -> bool:
    """Record progress; False when the worker must stop (cancel requested, or the lease was lost)."""
    updated = (AcquisitionStep.objects.filter(pk=step_id, state=phase, runner=runner, cancel_requested=False)
               .update(heartbeat=_now(), percent=round(percent, 2), eta_seconds=eta))
    return updated == 1


@transaction.atomic
def step_cancel_acknowledge(*, step_id: int, phase: str) -> None:
    """The worker stopped because of a cancel: finish the cancellation."""
    step = AcquisitionStep.objects.select_for_update().get(pk=step_id)
    if step.state == phase and step.cancel_requested:
        step_transition(step=step, target=State.CANCELLED, reason=step.reason or "cancelled")


def steps_resume_stalled(*, live_workers: set[str], me: str) -> list[int]:
    """Re-schedule worker phases whose runner is gone (called when a worker starts).

    A phase is orphaned when its runner's worker is not alive (``live_workers``: node
    names answering a ping) or is this very worker name (it just started, so any
    earlier process with the name is dead), or when nobody claimed it (its message was
    lost with a killed worker). Duplicates are harmless: phases are idempotent.
    """
    resumed = []
    for step in AcquisitionStep.objects.filter(state__in=WORKER_PHASES):
        host = step.runner.split("|", 1)[0]
        if step.runner and host in live_workers and host != me:
            continue
        with transaction.atomic():
            AcquisitionStep.objects.filter(pk=step.pk, runner=step.runner).update(runner="")
            step.refresh_from_db()
            enqueue_phase(step)
        resumed.append(step.id)
    return resumed
