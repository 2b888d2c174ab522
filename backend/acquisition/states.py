"""The state machine of one acquisition step (method.md §4).

    created -> inferring -> selecting -> annotating -> training -> evaluating -> done
    any state that is not final -> failed (with a reason) | cancelled (with a reason)

A state names the phase that is pending or running: a step in ``training`` has its
training task queued or running. Worker phases run as Celery tasks; ``annotating``
waits for people. Every transition goes through ``check_transition``.
"""

from __future__ import annotations

from django.db import models


class State(models.TextChoices):
    CREATED = "created", "created"
    INFERRING = "inferring", "inferring"
    SELECTING = "selecting", "selecting"
    ANNOTATING = "annotating", "annotating"
    TRAINING = "training", "training"
    EVALUATING = "evaluating", "evaluating"
    DONE = "done", "done"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


ORDER: tuple[str, ...] = (
    State.CREATED, State.INFERRING, State.SELECTING, State.ANNOTATING,
    State.TRAINING, State.EVALUATING, State.DONE,
)
FINAL = frozenset({State.DONE, State.FAILED, State.CANCELLED})
# Phases a worker runs; the others wait for a person (annotating) or are final.
WORKER_PHASES = frozenset({State.INFERRING, State.SELECTING, State.TRAINING, State.EVALUATING})
# The Celery task (by name: ``backend.core.jobs``) that runs each worker phase, on the gpu queue.
PHASE_TASKS = {
    State.INFERRING: "acquisition.step_infer",
    State.SELECTING: "acquisition.step_select",
    State.TRAINING: "acquisition.step_train",
    State.EVALUATING: "acquisition.step_evaluate",
}
GPU_QUEUE = "gpu"


class IllegalTransition(Exception):  # noqa: N818 - reads as the event it reports
    """A step was asked to move to a state it cannot reach from its current one."""


def allowed_targets(current: str) -> frozenset[str]:
    if current in FINAL:
        return frozenset()
    following = ORDER[ORDER.index(current) + 1]
    return frozenset({following, State.FAILED, State.CANCELLED})


def check_transition(current: str, target: str) -> None:
    """Raise IllegalTransition unless ``current -> target`` is an edge of the machine."""
    if target not in allowed_targets(current):
        if current in FINAL:
            msg = f"the step is {current}; a finished step cannot change state (start a new step instead)"
        else:
            msg = f"a step in state {current} cannot move to {target}; next is {ORDER[ORDER.index(current) + 1]}"
        raise IllegalTransition(msg)
