"""Two acquisition steps on tiny phantoms through the HTTP API, with PostgreSQL, Redis and a
separate Celery worker process that is killed during training of the second step."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.services]

SHAPE = (12, 64, 64)
SETUP = """
import json
from django.contrib.auth.models import User
from backend.acquisition.demo import phantom_project
admin = User.objects.get(username="it-admin")
project = phantom_project(name="it", admin=admin, n_pool=2, n_test=2, shape={shape}, seed_fraction=0.25,
    network_profile="tiny", network_config={{"max_epochs": 3, "batch_size": 8, "patience": 0,
    "augment": False, "val_samples": 2}}, slices_per_step=3, k_uncertain=6, mc_samples=3, tau=1e-3)
scans = {{s.id: int(s.name.split("-")[1]) for s in project.pools.get().scans.all()}}
print(json.dumps({{"project": project.id, "scans": scans}}))
"""
# Long enough that the kill below lands during training: with 12 epochs of these tiny
# slices the whole phase took about a second, and the kill sometimes came after it ended.
LONGER_TRAINING = """
from backend.projects.models import Project
p = Project.objects.get(pk={project})
p.network_config = dict(p.network_config, max_epochs=60)
p.save()
"""


def answer_everything(stack, project: int, references: dict[int, np.ndarray]) -> int:
    answered = 0
    while True:
        status, q = stack.request("POST", f"/api/projects/{project}/queries/next/")
        if status == 204:
            return answered
        assert status == 200, q
        shape = (q["height"], q["width"])
        mask = np.unpackbits(np.frombuffer(base64.b64decode(q["mask"]), np.uint8), count=shape[0] * shape[1])
        mask = mask.astype(bool).reshape(shape)
        labels = np.where(mask, references[q["scan"]][q["z"]], 255).astype(np.uint8)
        status, body = stack.request("POST", f"/api/projects/{project}/queries/{q['id']}/submit/",
                                     {"labels": base64.b64encode(labels.tobytes()).decode(), "seconds_spent": 1.0})
        assert status == 201, body
        answered += 1


def test_two_steps_through_the_api_survive_a_worker_killed_during_training(production_stack):
    from backend.acquisition.ml_adapter import phantom_volume

    stack = production_stack
    setup = json.loads(stack.manage("shell", "-c", SETUP.format(shape=SHAPE)).strip().splitlines()[-1])
    project = setup["project"]
    references = {int(scan): phantom_volume(seed, shape=SHAPE, fov_mm=360.0)[1]
                  for scan, seed in setup["scans"].items()}
    seeded = stack.get(f"/api/projects/{project}/training-set/")["slices"]

    # Step 1, undisturbed.
    status, step = stack.request("POST", f"/api/projects/{project}/steps/", {})
    assert status == 201, step
    stack.wait_for_step(project, step["id"], {"annotating", "training", "evaluating", "done"})
    answer_everything(stack, project, references)
    first = stack.wait_for_step(project, step["id"], {"done"})

    # Step 2: kill the worker once training has written a checkpoint.
    stack.manage("shell", "-c", LONGER_TRAINING.format(project=project))
    status, step = stack.request("POST", f"/api/projects/{project}/steps/", {})
    assert status == 201, step
    stack.wait_for_step(project, step["id"], {"annotating", "training"})
    answer_everything(stack, project, references)
    deadline = time.monotonic() + 300
    while (body := stack.get(f"/api/projects/{project}/steps/{step['id']}/"))["percent"] < 10:
        assert body["state"] == "training" and time.monotonic() < deadline, body
        time.sleep(0.2)
    stack.kill("worker")
    assert stack.get(f"/api/projects/{project}/steps/{step['id']}/")["state"] == "training"
    stack.start_worker("worker2")  # a new worker finds the orphaned phase and resumes it
    second = stack.wait_for_step(project, step["id"], {"done"}, timeout=400)

    # Nothing lost: every answer of both steps is in the training set.
    queries = stack.get(f"/api/projects/{project}/steps/{step['id']}/queries/")
    assert queries and all(q["status"] == "answered" for q in queries)
    assert stack.get(f"/api/projects/{project}/training-set/")["slices"] == seeded + 3 + 3
    # MAC, Dice and predicted Dice are recorded.
    mac = stack.get(f"/api/projects/{project}/acquisition/mac/")
    assert [row["step"] for row in mac["steps"]] == [1, 2]
    assert all(0.0 <= row["mac"] <= 1.0 for row in mac["steps"])
    models = {m["step"]: m for m in stack.get(f"/api/projects/{project}/models/")}
    for step_body in (first, second):
        metrics = models[step_body["id"]]["metrics"]["structures"]
        # A Dice for every structure the evaluation slices hold; the others say why they have none.
        assert any(row["dice"] is not None for row in metrics.values())
        assert all((row["dice"] is not None) == (row["status"]["dice"] == "ok") for row in metrics.values())
        assert all(row["reasons"].get("dice") for row in metrics.values() if row["dice"] is None)
        assert models[step_body["id"]]["calibration"] is not None
        # A predicted Dice where the uncertainty is a usable signal; else none, and the warning says why.
        signal = models[step_body["id"]]["metrics"]["uncertainty"]
        given = [row for row in metrics.values() if row["predicted_dice"] is not None]
        assert given if signal["usable"] else (not given and signal["warning"])
    assert models[second["id"]]["training"]["resumed"] is True
