"""Celery tasks of the acquisition loop (``gpu`` queue): fetch by id, call a service.

acks_late and reject_on_worker_lost are set globally, so a task whose worker dies is
delivered again; ``phase_execute`` makes every delivery after the first a no-op once
the phase is recorded. When a worker (re)starts it also re-schedules phases whose
runner is gone (``steps_resume_stalled``): with Redis a lost message only comes back
after the broker's visibility timeout, and the filesystem broker never returns it.
"""

from __future__ import annotations

import logging
import os

from celery import shared_task
from celery.signals import worker_ready

from backend.acquisition.states import State

log = logging.getLogger(__name__)


def _runner(task) -> str:
    return f"{task.request.hostname or 'local'}|{os.getpid()}"


def _phase(task, step_id: int, phase: str) -> str:
    from backend.acquisition.services_phases import phase_execute

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
    from backend.acquisition.services_segmentation import segmentation_run

    return segmentation_run(segmentation_id=segmentation_id)


GPU_QUEUE = "gpu"  # every task here is sent with queue=GPU_QUEUE (see ``send``)


def send(task, *args) -> None:
    task.apply_async(args, queue=GPU_QUEUE)


PHASE_TASKS = {
    State.INFERRING: step_infer_task,
    State.SELECTING: step_select_task,
    State.TRAINING: step_train_task,
    State.EVALUATING: step_evaluate_task,
}


@worker_ready.connect
def resume_orphaned_phases(sender=None, **kwargs) -> None:
    """A starting worker re-schedules the phases of steps whose worker died."""
    from backend.acquisition.services_steps import steps_resume_stalled

    try:
        me = getattr(sender, "hostname", "") or ""
        replies = sender.app.control.ping(timeout=1.0) if sender is not None else []
        live = {name for reply in replies or [] for name in reply}
        resumed = steps_resume_stalled(live_workers=live, me=me)
        if resumed:
            log.warning("re-scheduled the current phase of steps %s after a worker loss", resumed)
    except Exception:  # noqa: BLE001 - a failed recovery must not stop the worker from serving
        log.exception("could not check for orphaned acquisition phases")
