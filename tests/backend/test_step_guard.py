"""Eq. 7 with a guard in the worker: whole slices while the model is untrusted, auto-labels counted."""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from backend.acquisition import codec
from backend.acquisition.models import ModelVersion, Query, TrainingSlice
from backend.acquisition.selectors import mac_summary
from backend.acquisition.states import State
from backend.acquisition.steps.services import step_start
from backend.imaging.volumes import reference_labels, scan_volume
from tests.backend.factories import (
    acquisition_project,
    one_torch_thread_with_tmp_storage,
)
from tests.backend.test_acquisition_phases import answer_all, run_phase

pytestmark = pytest.mark.django_db
IGNORE = 255


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    yield from one_torch_thread_with_tmp_storage(settings, tmp_path)


def _project(rule: str | None = None, **fields):
    """A tiny project under ``rule`` (None: the product's default, no ``label_rule`` set)."""
    project, lead, (annotator, _) = acquisition_project(n_pool=1, n_test=0, **fields)
    config = {k: v for k, v in project.network_config.items() if k != "label_rule"}
    project.network_config = config if rule is None else {**config, "label_rule": rule}
    project.save(update_fields=["network_config"])
    return project, lead, annotator


def _select(project, lead):
    step = step_start(project=project, user=lead)
    for phase in (State.INFERRING, State.SELECTING):
        assert run_phase(step, phase) == "done", phase
    step.refresh_from_db()
    return step, list(Query.objects.filter(step=step).order_by("id"))


def _unpacked(query):
    shape = (query.height, query.width)
    return codec.unpack_mask(query.mask, shape), codec.unpack_labels(query.predicted, shape)


def test_an_untrusted_first_model_asks_for_whole_slices_and_labels_nothing_itself():
    project, lead, annotator = _project()
    step, queries = _select(project, lead)
    assert step.guard["mode"] == "whole_slices" and "held-out" in step.guard["reason"]
    version = ModelVersion.objects.get(project=project, number=0)
    assert len(version.training["val_dice_per_class"]) == 23 and version.training["validation_slices"] >= 1
    for query in queries:
        mask, _ = _unpacked(query)
        assert mask.all() and query.n_auto_labelled == 0
    answer_all(step, annotator)
    for row in TrainingSlice.objects.filter(step=step):
        ref = np.asarray(reference_labels(row.scan.reference_labels.get())[row.z])
        np.testing.assert_array_equal(codec.unpack_labels(row.labels, (row.height, row.width)), ref)
    assert mac_summary(project)["steps"][0]["auto_labelled_pixels"] == 0


def test_the_papers_rule_auto_labels_every_unqueried_pixel_and_counts_the_wrong_ones():
    project, lead, annotator = _project("paper", tau=0.05)
    step, queries = _select(project, lead)
    assert step.guard["mode"] == "auto_label" and step.guard["trusted"] is None
    for query in queries:
        mask, stored = _unpacked(query)
        assert query.n_auto_labelled == int((~mask).sum()) and (stored[~mask] != IGNORE).all()
        ref = np.asarray(reference_labels(query.scan.reference_labels.get())[query.z])
        assert query.n_auto_wrong == int(((stored != ref) & ~mask).sum())
    row = mac_summary(project)["steps"][0]
    assert row["auto_labelled_pixels"] == sum(q.n_auto_labelled for q in queries)
    assert row["auto_labelled_wrong"] == sum(q.n_auto_wrong for q in queries)
    api = APIClient()
    api.force_authenticate(lead)
    listed = api.get(f"/api/projects/{project.id}/steps/").json()[0]
    assert listed["guard"]["rule"] == "paper" and listed["mac"]["auto_labelled_wrong"] == row["auto_labelled_wrong"]


def test_a_model_trusted_on_some_classes_auto_labels_only_those_and_the_air():
    """A mean held-out Dice below 0.5 would ask for whole slices (the first test)."""
    project, lead, annotator = _project(tau=0.05)
    step, _ = _select(project, lead)
    answer_all(step, annotator)
    for phase in (State.TRAINING, State.EVALUATING):
        assert run_phase(step, phase) == "done"
    version = ModelVersion.objects.get(step=step)
    # Background and labels 1, 2 learnt (>= 0.8); the rest half-learnt: a mean above 0.5.
    trusted = [0.99, 0.95, 0.9] + [0.6] * 20
    version.training = {**version.training, "val_dice_per_class": trusted}
    version.save(update_fields=["training"])
    step2, queries = _select(project, lead)
    assert step2.guard["mode"] == "auto_label" and step2.guard["trusted"] == [0, 1, 2]
    for query in queries:
        mask, stored = _unpacked(query)
        assert set(np.unique(stored[~mask])) <= {0, 1, 2, IGNORE}
        hu = np.asarray(scan_volume(query.scan)[query.z])
        assert (stored[(hu < -900) & ~mask & (stored != IGNORE)] == 0).all()  # air is background
        assert query.n_auto_labelled == int(((stored != IGNORE) & ~mask).sum())


def test_a_project_chooses_its_rule_and_a_wrong_one_is_refused_with_the_choices():
    project, lead, _ = _project()
    api = APIClient()
    api.force_authenticate(lead)
    bad = api.patch(f"/api/projects/{project.id}/", {"network_config": {"label_rule": "sometimes"}}, format="json")
    assert bad.status_code == 400 and "guard, paper, masked" in str(bad.json())
    project.refresh_from_db()
    assert "label_rule" not in project.network_config
    ok = api.patch(f"/api/projects/{project.id}/",
                   {"network_config": {**project.network_config, "label_rule": "masked"}}, format="json")
    assert ok.status_code == 200


def test_the_string_network_options_offer_exactly_the_librarys_choices():
    from backend.projects.services import _NETWORK_CHOICES
    from mltasks.augment import AUGMENT_PRESETS
    from mltasks.guard import RULES
    from mltasks.train import PATIENCE_RULES

    assert set(_NETWORK_CHOICES["label_rule"]) == set(RULES)
    assert set(_NETWORK_CHOICES["patience_rule"]) == set(PATIENCE_RULES)
    assert set(_NETWORK_CHOICES["augment_preset"]) == set(AUGMENT_PRESETS)


def test_an_imported_model_is_measured_on_this_projects_slices_before_it_may_auto_label():
    # Its validation Dice came from another CT: the first step measures it on this project's
    # training slices (which it never trained on) and decides from that, not from nothing.
    from backend.acquisition.outputs.model_import import model_version_import
    from backend.projects.access import Role
    from backend.projects.models import Membership

    first, lead, _ = _project("paper")
    _select(first, lead)  # trains the first project's model 0
    second, _, _ = _project()
    # Used as it is: an adapted import (the default) is a model trained here, with its own validation.
    second.network_config = {**second.network_config, "adapt_imported": False}
    second.save(update_fields=["network_config"])
    Membership.objects.create(project=second, user=lead, role=Role.LEAD)
    imported = model_version_import(second, from_version=ModelVersion.objects.get(project=first, number=0), user=lead)
    assert imported.training["val_dice_per_class"] is None
    labelled = TrainingSlice.objects.filter(project=second).count()

    step, _ = _select(second, lead)

    imported.refresh_from_db()
    measured = imported.training["val_dice_per_class"]
    assert len(measured) == 23 and imported.training["validation_slices"] == labelled > 0
    # A barely trained tiny network: measured, and too weak to be trusted.
    assert step.guard["mode"] == "whole_slices" and "held-out mean Dice" in step.guard["reason"]
    assert "no held-out Dice yet" not in step.guard["reason"]


def test_with_held_out_slices_the_guard_decides_on_them_not_on_one_validation_slice():
    # A 5 % seed validates on one or two slices; the project's held-out slices are more, spread
    # over the scan and never trained on: the guard measures the model there, once per version.
    from backend.acquisition.held_out.services import held_out_choose
    from backend.acquisition.steps.guarding import step_guard
    from backend.acquisition.steps.training_set import training_set_seed

    project, lead, _ = _project(seed_fraction=None)
    held_out_choose(project=project, per_scan=2)
    training_set_seed(project=project, fraction=0.25)
    step, _ = _select(project, lead)

    assert step.guard["measured_on"] == "2 held-out slices"
    version = ModelVersion.objects.get(project=project, number=0)
    assert len(version.training["held_out_dice_per_class"]) == 23 and version.training["held_out_slices"] == 2
    # A validation slice that flatters the model does not override the held-out measurement...
    version.training = {**version.training, "val_dice_per_class": [0.99] * 23}
    version.save(update_fields=["training"])

    def never_loaded(_version):
        raise AssertionError("measured once per version: no second inference")

    again = step_guard(step, load_model=never_loaded)
    assert again["mode"] == "whole_slices" and again["measured_on"] == "2 held-out slices"
    # ...and without held-out slices the validation Dice is what there is.
    from backend.acquisition.models import HeldOutSlice

    HeldOutSlice.objects.filter(project=project).delete()
    version.training = {k: v for k, v in version.training.items() if k != "held_out_dice_per_class"}
    version.save(update_fields=["training"])
    fallback = step_guard(step, load_model=never_loaded)
    assert fallback["mode"] == "auto_label" and fallback["measured_on"].endswith("validation slices")


def test_the_evaluating_phase_leaves_its_held_out_dice_for_the_next_steps_guard():
    # The step's model is segmented on the held-out slices when it is evaluated; the next step's
    # guard reads that pooled Dice instead of segmenting the same slices again.
    from backend.acquisition.held_out.services import held_out_choose
    from backend.acquisition.steps.guarding import step_guard
    from backend.acquisition.steps.training_set import training_set_seed
    from tests.backend.test_acquisition_phases import run_whole_step

    project, lead, annotator = _project(seed_fraction=None)
    held_out_choose(project=project, per_scan=2)
    training_set_seed(project=project, fraction=0.25)
    step = run_whole_step(project, lead, annotator)

    version = ModelVersion.objects.get(step=step)
    pooled = version.training["held_out_dice_per_class"]
    assert version.training["held_out_slices"] == 2 and len(pooled) == 23
    assert version.training["slices"] > 0  # the training summary is kept beside it
    assert pooled[0] is not None and 0.0 <= pooled[0] <= 1.0  # background is on every slice

    def never_loaded(_version):
        raise AssertionError("the evaluating phase measured this version already")

    guard = step_guard(step_start(project=project, user=lead), load_model=never_loaded)
    assert guard["measured_on"] == "2 held-out slices"
