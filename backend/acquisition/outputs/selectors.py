"""Reads of the outputs: a model's accuracy figures, each with its status."""

from __future__ import annotations

from backend.acquisition.models import ModelVersion
from backend.acquisition.states import FINAL, State
from backend.acquisition.steps.accuracy import unevaluated, with_statuses


def model_metrics(version: ModelVersion) -> dict:
    """The version's metrics with a status on every figure; for a version without any, why."""
    if version.metrics:
        return with_statuses(version.metrics)
    step = version.step
    if step is None:
        why = ("model 0 is trained on the initial training set inside step 1's inferring phase and is not "
               "evaluated; each step's own model is, at the end of its step")
    elif step.state in FINAL and step.state != State.DONE:
        why = f"step {step.number} was {step.state} before its model was evaluated"
    else:
        why = f"step {step.number} is {step.state}; its model is evaluated at the end of the step"
    return unevaluated(why)
