"""A project that starts from, or takes in, another project's model (issue 18, item 4)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from backend.acquisition.models import ModelVersion
from backend.acquisition.outputs.model_import import model_version_import
from backend.acquisition.states import State
from backend.acquisition.steps.services import step_start
from backend.projects.access import Role
from backend.projects.models import Membership
from tests.backend.factories import acquisition_project, one_torch_thread_with_tmp_storage
from tests.backend.test_acquisition_phases import run_whole_step

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    yield from one_torch_thread_with_tmp_storage(settings, tmp_path)


def _two_projects(**config):
    first, lead, (annotator, _) = acquisition_project(n_pool=1, n_test=0)
    second, _, (second_annotator, _) = acquisition_project(n_pool=1, n_test=0)
    second.network_config = {**second.network_config, **config}
    second.save(update_fields=["network_config"])
    Membership.objects.create(project=second, user=lead, role=Role.LEAD)
    return first, second, lead, annotator, second_annotator


def test_models_are_numbered_in_the_order_they_are_made_and_steps_count_steps():
    first, second, lead, annotator, second_annotator = _two_projects()
    run_whole_step(first, lead, annotator)
    run_whole_step(second, lead, second_annotator)  # models 0 and 1
    imported = model_version_import(second, from_version=ModelVersion.objects.get(project=first, number=1), user=lead)
    assert imported.number == 2
    step = run_whole_step(second, lead, second_annotator)
    assert step.state == State.DONE and step.number == 2
    # The import is first fitted to the project's labelled slices (3), then the step trains (4).
    assert ModelVersion.objects.get(project=second, number=3).origin["kind"] == "adapted"
    trained = ModelVersion.objects.get(step=step)
    assert trained.number == 4 and trained.origin == {"kind": "trained"}


def test_an_imported_model_is_first_adapted_to_the_projects_labelled_slices():
    first, second, lead, annotator, second_annotator = _two_projects()
    run_whole_step(first, lead, annotator)
    source = ModelVersion.objects.get(project=first, number=1)
    imported = model_version_import(second, from_version=source, user=lead)
    assert imported.number == 0

    step = run_whole_step(second, lead, second_annotator)

    adapted = ModelVersion.objects.get(project=second, number=1)
    assert adapted.step is None and adapted.origin == {"kind": "adapted", "from_model_version": imported.pk,
                                                       "from_number": 0}
    assert adapted.training["slices"] > 0 and adapted.training["stop_reason"]
    assert step.costs["inferring"]["first_model_seconds"] == adapted.training["seconds"]
    assert ModelVersion.objects.get(step=step).number == 2 and step.number == 1
    assert step_start(project=second, user=lead).number == 2


def test_the_adaptation_is_the_projects_first_model_and_gets_model_0s_budget():
    first, second, lead, annotator, second_annotator = _two_projects(first_max_epochs=3, max_epochs=1)
    run_whole_step(first, lead, annotator)
    model_version_import(second, from_version=ModelVersion.objects.get(project=first, number=1), user=lead)
    api = APIClient()
    api.force_authenticate(lead)
    cost = api.get(f"/api/projects/{second.id}/acquisition/step-cost/").json()
    assert cost["first_model"]["max_epochs"] == 3 and cost["training"]["max_epochs"] == 1

    step = run_whole_step(second, lead, second_annotator)

    assert ModelVersion.objects.get(project=second, number=1).training["epochs"] == 3
    assert ModelVersion.objects.get(step=step).training["epochs"] == 1
    assert api.get(f"/api/projects/{second.id}/acquisition/step-cost/").json()["first_model"] is None


def test_a_project_may_use_an_imported_model_as_it_is():
    first, second, lead, annotator, second_annotator = _two_projects(adapt_imported=False)
    run_whole_step(first, lead, annotator)
    model_version_import(second, from_version=ModelVersion.objects.get(project=first, number=1), user=lead)
    step = run_whole_step(second, lead, second_annotator)
    assert list(ModelVersion.objects.filter(project=second).values_list("number", "origin__kind")) == [
        (0, "project"), (1, "trained")]
    assert step.costs["inferring"]["first_model_seconds"] is None


def _transfer_with_held_out(monkeypatch, imported_score: float, adapted_score: float):
    """A second project with held-out slices that imports the first's model, its held-out
    measurements fixed: the import scores ``imported_score``, its adaptation ``adapted_score``."""
    from backend.acquisition.held_out.services import held_out_choose
    from backend.acquisition.steps import guarding
    from backend.acquisition.steps.training_set import training_set_seed

    first, lead, (annotator, _) = acquisition_project(n_pool=1, n_test=0)
    second, _, (second_annotator, _) = acquisition_project(n_pool=1, n_test=0, seed_fraction=None)
    Membership.objects.create(project=second, user=lead, role=Role.LEAD)
    held_out_choose(project=second, per_scan=2)
    training_set_seed(project=second, fraction=0.25)
    run_whole_step(first, lead, annotator)
    imported = model_version_import(second, from_version=ModelVersion.objects.get(project=first, number=1), user=lead)
    scores = iter([imported_score, adapted_score])
    monkeypatch.setattr(guarding, "_measure", lambda *args: ([1.0] + [next(scores)] * 22, 2))
    return second, lead, second_annotator, imported


def test_an_adaptation_that_scores_lower_on_the_held_out_slices_is_dropped_and_the_import_kept(monkeypatch):
    second, lead, annotator, imported = _transfer_with_held_out(monkeypatch, 0.7, 0.6)

    step = run_whole_step(second, lead, annotator)

    verdict = step.costs["inferring"]["adaptation"]
    assert verdict["kept"] == "imported" and verdict["imported_dice"] == 0.7 and verdict["adapted_dice"] == 0.6
    assert step.costs["inferring"]["first_model_seconds"] > 0  # the adaptation's time was spent
    assert list(ModelVersion.objects.filter(project=second).values_list("number", "origin__kind")) == [
        (0, "project"), (1, "trained")]  # no adapted version
    imported.refresh_from_db()
    assert imported.training["adaptation"]["kept"] == "imported"
    assert step.guard["measured_on"] == "2 held-out slices"
    # The next step does not try again: the step's own model is current now, and even with the
    # import current, an adaptation that lost is not repeated.
    from backend.acquisition.steps.selectors import adapts_import

    assert not adapts_import(second, imported)


def test_an_adaptation_that_scores_higher_replaces_the_import_and_keeps_its_measurement(monkeypatch):
    second, lead, annotator, imported = _transfer_with_held_out(monkeypatch, 0.6, 0.7)

    step = run_whole_step(second, lead, annotator)

    assert step.costs["inferring"]["adaptation"]["kept"] == "adapted"
    adapted = ModelVersion.objects.get(project=second, number=1)
    assert adapted.origin["kind"] == "adapted"
    assert adapted.training["held_out_dice_per_class"][1] == 0.7 and adapted.training["held_out_slices"] == 2
