"""A step on scans whose working grids differ: the network grid, the training budget, the cost estimate."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from rest_framework.test import APIClient

from backend.acquisition import ml_adapter
from backend.acquisition.models import ModelVersion, Query
from backend.acquisition.states import State
from backend.acquisition.steps import scan_inputs
from backend.acquisition.steps.services import step_start
from backend.imaging.models import Scan
from mltasks.geometry import Geometry
from mltasks.phantom import generate_phantom
from tests.backend.factories import (
    acquisition_project,
    one_torch_thread_with_tmp_storage,
    scan_with_volume,
)
from tests.backend.test_acquisition_phases import run_phase, run_whole_step

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    yield from one_torch_thread_with_tmp_storage(settings, tmp_path)


def _narrow_scan(project) -> Scan:
    """A pool scan cropped to a 40 x 56 body box at 4.5 mm pixels, as the importer keeps a narrow CT."""
    ph = generate_phantom(7, shape=(10, 64, 64))
    hu, labels = ph.hu[:, 12:52, 4:60], ph.labels[:, 12:52, 4:60]
    geometry = Geometry(shape=hu.shape, spacing=(3.0, 4.5, 4.5))
    return scan_with_volume(project.pools.first(), hu, name="narrow", geometry=geometry, labels=labels,
                            label_set=project.label_set)


def test_a_step_trains_and_queries_scans_of_different_working_grids_at_their_own_resolution():
    project, lead, (annotator, _) = acquisition_project(n_pool=1, slices_per_step=4, k_uncertain=8,
                                                       seed_fraction=None)
    narrow = _narrow_scan(project)
    from backend.acquisition.steps.training_set import training_set_seed

    training_set_seed(project=project, fraction=0.3)  # both scans hold training slices: two shapes in a batch
    step = run_whole_step(project, lead, annotator)
    assert step.state == State.DONE
    shapes = {(q.scan_id, q.height, q.width) for q in Query.objects.filter(step=step)}
    for scan_id, h, w in shapes:
        assert (h, w) == tuple(Scan.objects.get(pk=scan_id).shape[1:])
    version = ModelVersion.objects.get(step=step)
    assert version.config["pixel_mm"] == ml_adapter.PROFILE_PIXEL_MM["tiny"]
    assert version.training["network_shape"] == [64, 64]  # the 64 x 64 scan; the narrow one padded into it
    assert version.training["budget"]["max_seconds"] > 0
    assert narrow.shape[1:] == (40, 56)


def test_network_inputs_are_made_once_per_scan_and_reused_by_the_next_step():
    project, lead, (annotator, _) = acquisition_project(n_pool=1, n_test=0)
    made = []
    real = ml_adapter.network_inputs

    def counting(hu, grid):
        made.append(grid.shape)
        return real(hu, grid)

    with mock.patch.object(scan_inputs.ml_adapter, "network_inputs", side_effect=counting):
        run_whole_step(project, lead, annotator)
        assert len(made) == 1  # the cheap and the full pass share them
        step = step_start(project=project, user=lead)
        assert run_phase(step, State.INFERRING) == "done"
    assert len(made) == 1  # read back from the cache


def test_the_next_steps_cost_is_estimated_from_the_budget_and_the_measured_rate():
    project, lead, (annotator, _) = acquisition_project(n_pool=1, n_test=1)
    api = APIClient()
    api.force_authenticate(lead)
    url = f"/api/projects/{project.id}/acquisition/step-cost/"
    before = api.get(url).json()
    assert before["first_model"]["max_seconds"] == ml_adapter.TRAINING_BUDGETS["cpu"]["first"][1]
    assert before["inference_seconds"] is None and before["total_seconds"] is None
    assert before["slice_passes"] == ml_adapter.planned_passes(
        before["unlabelled_slices"], n_candidates=project.k_uncertain, t_full=project.mc_samples)
    step = run_whole_step(project, lead, annotator)
    after = api.get(url).json()
    cost = step.costs["inferring"]
    assert cost["slices"] > 0 and cost["slice_passes"] >= cost["slices"] and cost["first_model_seconds"] >= 0
    assert after["first_model"] is None and after["measured_on_step"] == step.number
    assert after["seconds_per_slice_pass"] == pytest.approx(cost["seconds"] / cost["slice_passes"], abs=1e-4)
    assert after["total_seconds"] == pytest.approx(
        after["training"]["max_seconds"] + after["inference_seconds"] + after["evaluation_seconds"], abs=0.2)
    api.force_authenticate(annotator)
    assert api.get(url).status_code == 403


def test_a_project_sets_its_own_training_budget_and_network_pixel():
    project, lead, _ = acquisition_project(n_pool=1, n_test=0)
    api = APIClient()
    api.force_authenticate(lead)
    url = f"/api/projects/{project.id}/"
    bad = api.patch(url, {"network_config": {"pixel_mm": 40}}, format="json")
    assert bad.status_code == 400 and "pixel_mm" in str(bad.json())
    project.refresh_from_db()
    assert "pixel_mm" not in project.network_config  # nothing stored
    good = api.patch(url, {"network_config": {**project.network_config, "max_seconds": 30, "pixel_mm": 6.0}},
                     format="json")
    assert good.status_code == 200, good.json()
    cost = api.get(f"/api/projects/{project.id}/acquisition/step-cost/").json()
    assert cost["first_model"]["max_seconds"] == 30 and cost["training"]["max_seconds"] == 30
    project.refresh_from_db()
    assert ml_adapter.pixel_mm_of(project.network_profile, project.network_config) == 6.0
    # Model 0 learns from the seed alone: it may get its own budget, the steps keep theirs.
    config = {**project.network_config, "first_max_seconds": 900, "first_max_epochs": 70}
    assert api.patch(url, {"network_config": config}, format="json").status_code == 200
    cost = api.get(f"/api/projects/{project.id}/acquisition/step-cost/").json()
    assert cost["first_model"]["max_seconds"] == 900 and cost["first_model"]["max_epochs"] == 70
    assert cost["training"]["max_seconds"] == 30
    bad = api.patch(url, {"network_config": {**config, "first_max_epochs": 0}}, format="json")
    assert bad.status_code == 400 and "first_max_epochs" in str(bad.json())


def test_models_of_earlier_versions_run_at_the_pixel_of_their_square_matrix():
    assert ml_adapter.model_pixel_mm({"net": {"matrix": 256}}) == pytest.approx(360 / 256)
    assert ml_adapter.model_pixel_mm({"net": {"matrix": 256}, "pixel_mm": 2.0}) == 2.0
    grid = ml_adapter.network_grid(Geometry(shape=(3, 512, 512), spacing=(1.0, 360 / 512, 360 / 512)).to_dict(),
                                   pixel_mm=360 / 256, depth=4)
    assert grid.shape == (256, 256)  # what such a model saw before network grids
    np.testing.assert_allclose(grid.pixel_mm, (360 / 256, 360 / 256))


def test_every_query_of_a_3_mm_series_is_an_acquired_slice(tmp_path):
    """Imported through the product (the working grid keeps the acquired slices), seeded, one step."""
    from backend.acquisition.steps.training_set import training_set_seed
    from backend.imaging import grids
    from backend.imaging.services import ImportInput, scan_import_file
    from mltasks.io import write_volume

    project, lead, _ = acquisition_project(n_pool=0, n_test=0, seed_fraction=None, slices_per_step=3,
                                           k_uncertain=6)
    spacing = (3.0, 5.0, 5.0)
    ph = generate_phantom(11, shape=(14, 72, 72), spacing=spacing)
    original = Geometry(shape=ph.hu.shape, spacing=spacing)
    ct = write_volume(ph.hu.astype(np.int16), original, tmp_path / "hip-3mm.nii.gz")
    labels = write_volume(ph.labels.astype(np.uint8), original, tmp_path / "hip-3mm-labels.nii.gz")
    [result] = scan_import_file(pool=project.pools.first(), path=ct, name="hip-3mm.nii.gz",
                                label_set=project.label_set, labels=ImportInput(labels, "hip-3mm-labels.nii.gz"))
    assert result["status"] == "imported", result
    scan = Scan.objects.get(pk=result["scan_id"])
    grid = grids.working_grid_of(scan)
    assert grid.z_step == 1 and scan.shape[0] == 14  # every acquired slice, none interpolated
    training_set_seed(project=project, fraction=0.25)
    step = step_start(project=project, user=lead)
    for phase in (State.INFERRING, State.SELECTING):
        assert run_phase(step, phase) == "done", phase
    acquired_z = original.origin[2] + spacing[0] * np.arange(14)  # identity direction: z is the last axis
    working = Geometry.from_dict(scan.geometry)
    queries = list(Query.objects.filter(step=step))
    assert len(queries) == 3
    for query in queries:
        position = working.origin[2] + working.spacing[0] * query.z
        assert np.isclose(acquired_z, position, atol=1e-6).any()
        assert grid.working_index(int(grid.z_indices[query.z])) == query.z
