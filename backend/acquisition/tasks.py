"""Celery tasks of the acquisition loop (``gpu`` queue): fetch by id, call a service.

acks_late and reject_on_worker_lost are set globally, so a task whose pool process dies
is delivered again (within seconds) and takes the orphaned phase over (``leases``);
``phase_execute`` makes every delivery after the first a no-op once the phase is
recorded. When a worker (re)starts it re-schedules phases whose runner is gone
(``steps_resume_stalled``), and every ``SWEEP_EVERY`` seconds it re-schedules phases
whose lease has lapsed (``steps_take_over_orphans``): with Redis the message of a
worker that vanished whole only comes back after the broker's visibility timeout,
and the filesystem broker never returns it.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready

from backend.acquisition.states import State
from backend.acquisition.steps.leases import SWEEP_EVERY, this_process

log = logging.getLogger(__name__)


def _runner(task) -> str:
    return this_process(task.request.hostname or "local")


def _phase(task, step_id: int, phase: str) -> str:
    from backend.acquisition.steps.phases import phase_execute

    return phase_execute(step_id=step_id, phase=phase, runner=_runner(task))


@shared_task(bind=True, name="acquisition.step_infer", acks_late=True)
def step_infer_task(self, step_id: int) -> str:
    return _phase(self, step_id, State.INFERRING)


@shared_task(bind=True, name="acquisition.step_select", acks_late=True)
def step_select_task(self, step_id: int) -> str:
    return _phase(self, step_id, State.SELECTING)


@shared_task(bind=True, name="acquisition.step_train", acks_late=True)
def step_train_task(self, step_id: int) -> str:
    return _phase(self, step_id, State.TRAINING)


@shared_task(bind=True, name="acquisition.step_evaluate", acks_late=True)
def step_evaluate_task(self, step_id: int) -> str:
    return _phase(self, step_id, State.EVALUATING)


@shared_task(name="acquisition.segment", acks_late=True)
def segmentation_task(segmentation_id: int) -> str:
    from backend.acquisition.outputs.segmentation import segmentation_run

    return segmentation_run(segmentation_id=segmentation_id)


@worker_ready.connect
def resume_orphaned_phases(sender=None, **kwargs) -> None:
    """A starting worker re-schedules the phases of steps whose worker died, then keeps watching."""
    from backend.acquisition.steps.services import steps_resume_stalled

    me = getattr(sender, "hostname", "") or ""
    try:
        replies = sender.app.control.ping(timeout=1.0) if sender is not None else []
        live = {name for reply in replies or [] for name in reply}
        resumed = steps_resume_stalled(live_workers=live, me=me)
        if resumed:
            log.warning("re-scheduled the current phase of steps %s after a worker loss", resumed)
    except Exception:  # noqa: BLE001 - a failed recovery must not stop the worker from serving
        log.exception("could not check for orphaned acquisition phases")
    timer = getattr(sender, "timer", None)
    if timer is not None:  # the worker's own timer: no thread of ours in the process that forks the pool
        timer.call_repeatedly(SWEEP_EVERY, take_over_orphans, (me,))


def take_over_orphans(me: str) -> None:
    from django.db import connections

    from backend.acquisition.steps.services import steps_take_over_orphans

    try:
        resumed = steps_take_over_orphans(me=me)
        if resumed:
            log.warning("re-scheduled the current phase of steps %s: their runner is gone", resumed)
    except Exception:  # noqa: BLE001 - the sweep runs again in SWEEP_EVERY seconds
        log.exception("could not check for orphaned acquisition phases")
    finally:
        connections.close_all()  # no idle connection kept in the process that forks the pool
