"""The worker and the simulation run one active-learning step: same slices, same queries.

The worker's inferring and selecting phases run on a phantom project; the simulation's
``propose_queries`` (what ``mltasks.simulate`` calls every step) then runs on the same
scans, the same model and the same seed. Their chosen slices and query masks must agree
pixel for pixel (the tiny network's matrix is the scans' own 64 x 64, so no resizing
stands between the two).
"""

from __future__ import annotations

import numpy as np
import pytest

from backend.acquisition import codec
from backend.acquisition.models import ModelVersion, Query, TrainingSlice
from backend.acquisition.selectors import pool_scans
from backend.acquisition.states import State
from backend.acquisition.steps.phases import local_checkpoint, phase_execute
from backend.acquisition.steps.services import step_start
from backend.imaging.volumes import scan_volume
from mltasks.active import ALConfig, SlicePool, propose_queries
from mltasks.checkpoint import load_model
from mltasks.guard import GuardDecision
from mltasks.resize import network_inputs
from tests.backend.factories import (
    acquisition_project,
    one_torch_thread_with_tmp_storage,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    yield from one_torch_thread_with_tmp_storage(settings, tmp_path)


def _simulation_pool(project) -> tuple[SlicePool, list[tuple[int, int]]]:
    """The project's pool as the simulation holds it, and the (scan, z) of every pool index."""
    labelled = set(TrainingSlice.objects.filter(project=project).values_list("scan_id", "z"))
    images, body, volumes, keys = [], [], [], []
    for k, scan in enumerate(pool_scans(project)):
        im, b = network_inputs(np.asarray(scan_volume(scan)), 64)
        images.append(im)
        body.append(b)
        volumes.append(np.full(im.shape[0], k))
        keys += [(scan.id, z) for z in range(im.shape[0])]
    done = np.array([key in labelled for key in keys])
    return SlicePool(np.concatenate(images), done, np.concatenate(body), np.concatenate(volumes)), keys


@pytest.mark.parametrize(("strategy", "rule"), [("tau", "paper"), ("random_pixels", "paper"),
                                              ("random_slices", "paper"), ("tau", "guard")])
def test_the_worker_and_the_simulation_choose_the_same_slices_and_pixels(strategy, rule):
    project, lead, _ = acquisition_project(strategy=strategy, tau=2e-3, slices_per_step=2, k_uncertain=4)
    project.network_config = {**project.network_config, "label_rule": rule}
    project.save(update_fields=["network_config"])
    step = step_start(project=project, user=lead)
    for phase in (State.INFERRING, State.SELECTING):
        assert phase_execute(step_id=step.id, phase=phase, runner="test|1") == "done"
    step.refresh_from_db()
    worker = {(q.scan_id, q.z): codec.unpack_mask(q.mask, (q.height, q.width))
              for q in Query.objects.filter(step=step)}
    stored = {(q.scan_id, q.z): codec.unpack_labels(q.predicted, (q.height, q.width))
              for q in Query.objects.filter(step=step)}
    assert len(worker) == 2

    model, _ = load_model(local_checkpoint(ModelVersion.objects.get(project=project, number=0)))
    pool, keys = _simulation_pool(project)
    config = ALConfig(strategy=strategy, tau=2e-3, n_select=2, candidate_factor=2.0, t_samples=2, seed=0)
    guard = GuardDecision.from_dict(step.guard)
    queries = propose_queries(model, pool, config, step=step.pk, guard=guard)  # seed 0 * 1000 + step = the worker's

    assert [keys[q.slice_index] for q in queries] == [tuple(s) for s in step.selected]
    for q in queries:
        np.testing.assert_array_equal(q.mask, worker[keys[q.slice_index]])
        np.testing.assert_array_equal(q.predicted, stored[keys[q.slice_index]])
    queried = sum(int(m.sum()) for m in worker.values())
    if strategy == "random_slices" or rule == "guard":  # a first model is not trusted: whole slices
        assert queried == 2 * 64 * 64
    else:  # a real pixel query, neither empty nor whole slices
        assert 0 < queried < 2 * 64 * 64
