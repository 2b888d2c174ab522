"""The step state machine: only its edges are allowed, and final states never change."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from backend.acquisition.errors import StepConflict
from backend.acquisition.models import AcquisitionStep
from backend.acquisition.states import (
    ORDER,
    IllegalTransition,
    State,
    allowed_targets,
    check_transition,
)
from backend.acquisition.steps.services import step_cancel, step_start, step_transition
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    scan_with_volume,
    use_tmp_storage,
)


@pytest.mark.parametrize("current, following", list(zip(ORDER[:-1], ORDER[1:], strict=True)))
def test_each_state_moves_to_the_next_or_to_failed_or_cancelled(current, following):
    assert allowed_targets(current) == {following, State.FAILED, State.CANCELLED}


@pytest.mark.parametrize("current, target", [
    (State.CREATED, State.SELECTING),  # skipping inference
    (State.ANNOTATING, State.EVALUATING),  # skipping training
    (State.TRAINING, State.ANNOTATING),  # going back
    (State.EVALUATING, State.INFERRING),
])
def test_illegal_transitions_are_rejected(current, target):
    with pytest.raises(IllegalTransition, match=f"a step in state {current} cannot move to {target}"):
        check_transition(current, target)


@pytest.mark.parametrize("final", [State.DONE, State.FAILED, State.CANCELLED])
def test_a_finished_step_cannot_change_state(final):
    with pytest.raises(IllegalTransition, match="a finished step cannot change state"):
        check_transition(final, State.CANCELLED)


@pytest.fixture
def project(settings, tmp_path, db):
    use_tmp_storage(settings, tmp_path)
    pool = PoolFactory()
    project = ProjectFactory(label_set=LabelSetFactory(labels__n=2), pools=[pool])
    scan = scan_with_volume(pool, np.zeros((2, 4, 4), np.int16), labels=np.ones((2, 4, 4), np.uint8),
                            label_set=project.label_set)
    assert scan.reference_labels.exists()
    return project


@pytest.mark.django_db
def test_an_illegal_transition_leaves_the_row_unchanged(project):
    step = AcquisitionStep.objects.create(project=project, number=1, state=State.ANNOTATING, strategy="tau",
                                          tau=1e-3, slices_per_step=2, k_uncertain=4, mc_samples=2)
    with pytest.raises(IllegalTransition):
        step_transition(step=step, target=State.DONE)
    step.refresh_from_db()
    assert step.state == State.ANNOTATING


@pytest.mark.django_db
def test_a_step_starts_without_labels_and_only_one_runs_at_a_time(project, monkeypatch):
    # An empty training set is a cold start (steps/coldstart.py), not a refusal.
    from backend.acquisition.models import TrainingSlice

    lead = MembershipFactory(project=project).user
    assert not TrainingSlice.objects.filter(project=project).exists()
    monkeypatch.setattr("backend.core.jobs.send", lambda *a, **k: None)
    step = step_start(project=project, user=lead)
    assert (step.number, step.state) == (1, State.INFERRING)
    assert [t["state"] for t in step.transitions] == ["created", "inferring"]
    with pytest.raises(StepConflict, match="step 1 is still inferring"):
        step_start(project=project, user=lead)
    step = step_cancel(step=step, user=lead)  # queued, no worker holds it yet: cancelled at once
    assert step.state == State.CANCELLED
    assert step_start(project=project, user=lead).number == 2


@pytest.mark.django_db
def test_cancel_of_a_running_phase_only_flags_it(project):
    lead = MembershipFactory(project=project).user
    step = AcquisitionStep.objects.create(project=project, number=1, state=State.TRAINING, strategy="tau",
                                          tau=1e-3, slices_per_step=2, k_uncertain=4, mc_samples=2,
                                          runner="worker@host|42", heartbeat=timezone.now())
    step = step_cancel(step=step, user=lead, reason="stop")
    assert (step.state, step.cancel_requested, step.reason) == (State.TRAINING, True, "stop")
    with pytest.raises(StepConflict, match="already cancelled"):
        step_cancel(step=step_transition(step=step, target=State.CANCELLED), user=lead)


@pytest.mark.django_db
def test_the_stopping_rule_blocks_a_new_step_unless_forced(project, monkeypatch):
    from backend.acquisition.steps.training_set import training_set_seed

    lead = MembershipFactory(project=project).user
    training_set_seed(project=project)
    AcquisitionStep.objects.create(project=project, number=1, state=State.DONE, strategy="tau", tau=1e-3,
                                   slices_per_step=2, k_uncertain=4, mc_samples=2, stop_reached=True)
    monkeypatch.setattr("backend.core.jobs.send", lambda *a, **k: None)
    with pytest.raises(StepConflict, match="the stopping rule held after step 1"):
        step_start(project=project, user=lead)
    assert step_start(project=project, user=lead, force=True).number == 2
