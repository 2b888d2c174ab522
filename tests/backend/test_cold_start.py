"""A start from nothing: no label and no model; step 1 asks for representative slices whole."""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from backend.acquisition import codec
from backend.acquisition.models import AcquisitionStep, ModelVersion, Query, TrainingSlice
from backend.acquisition.states import State
from backend.imaging.volumes import reference_labels
from tests.backend.factories import (
    acquisition_project,
    one_torch_thread_with_tmp_storage,
)
from tests.backend.test_acquisition_phases import answer_all, run_phase

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    yield from one_torch_thread_with_tmp_storage(settings, tmp_path)


def _cold_project():
    project, lead, (annotator, _) = acquisition_project(n_pool=2, n_test=1, seed_fraction=None, slices_per_step=3)
    project.network_config = {k: v for k, v in project.network_config.items() if k != "label_rule"}  # the default guard
    project.save(update_fields=["network_config"])
    assert not TrainingSlice.objects.filter(project=project).exists()
    return project, lead, annotator


def _start(project, lead) -> AcquisitionStep:
    api = APIClient()
    api.force_authenticate(lead)
    response = api.post(f"/api/projects/{project.id}/steps/", {}, format="json")
    assert response.status_code == 201, response.json()
    return AcquisitionStep.objects.get(pk=response.json()["id"])


def test_a_project_without_labels_asks_for_representative_slices_whole_and_trains_its_first_model():
    project, lead, annotator = _cold_project()
    step = _start(project, lead)
    assert run_phase(step, State.INFERRING) == "done"
    step.refresh_from_db()
    chosen = step.costs["cold_start"]["chosen"]
    assert step.state == State.SELECTING and len(chosen) == 3
    assert not ModelVersion.objects.filter(project=project).exists()  # no model was needed to choose
    for (scan_a, z_a) in chosen:  # spread: no two picks next to each other in one scan
        assert all(abs(z_a - z_b) > 1 for scan_b, z_b in chosen if scan_b == scan_a and z_b != z_a)
    assert run_phase(step, State.SELECTING) == "done"
    step.refresh_from_db()
    assert step.state == State.ANNOTATING and step.guard["mode"] == "whole_slices" and "no labels" in step.guard["reason"]
    queries = list(Query.objects.filter(step=step).order_by("id"))
    assert [[q.scan_id, q.z] for q in queries] == chosen
    for q in queries:
        shape = (q.height, q.width)
        assert codec.unpack_mask(q.mask, shape).all() and (codec.unpack_labels(q.predicted, shape) == 255).all()
        assert q.n_auto_labelled == 0
    assert answer_all(step, annotator) == 3
    for row in TrainingSlice.objects.filter(project=project):
        ref = np.asarray(reference_labels(row.scan.reference_labels.get())[row.z])
        np.testing.assert_array_equal(codec.unpack_labels(row.labels, (row.height, row.width)), ref)
    for phase in (State.TRAINING, State.EVALUATING):
        assert run_phase(step, phase) == "done"
    version = ModelVersion.objects.get(project=project)
    assert version.number == 0 and version.step_id == step.id and version.training["slices"] == 3  # the first model
    assert version.training["budget"]["max_epochs"] == project.network_config["max_epochs"]
    assert version.metrics["structures"]  # evaluated on the test scan like any model

    step2 = _start(project, lead)  # from now on the ordinary loop, with the guard
    assert run_phase(step2, State.INFERRING) == "done"
    step2.refresh_from_db()
    assert "cold_start" not in step2.costs and step2.costs["inferring"]["first_model_seconds"] is None


def test_the_cold_start_is_the_same_for_the_same_pool():
    project, lead, _ = _cold_project()
    step = _start(project, lead)
    assert run_phase(step, State.INFERRING) == "done"
    step.refresh_from_db()
    from backend.acquisition.steps.coldstart import cold_start_slices
    from backend.acquisition.steps.phases import cache_dir

    assert cold_start_slices(step, cache=cache_dir()) == step.costs["cold_start"]["chosen"]
