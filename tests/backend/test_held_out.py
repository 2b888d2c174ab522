"""Held-out slices: a lab's only CT measures its own models (issue 21).

A real hip CT run as a lab's only scan reported no accuracy at all: accuracy was measured
on whole test scans only. Here a one-scan phantom project holds out labelled slices,
seeds the rest, runs a step with scripted answers and gets Dice, PSV, the PDC fit, the
predicted Dice and the stopping rule on the held-out slices.
"""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from backend.acquisition.held_out.selectors import HELD_OUT_MARGIN, held_out_excluded
from backend.acquisition.models import (
    AcquisitionStep,
    HeldOutSlice,
    ModelVersion,
    Query,
    TrainingSlice,
)
from backend.acquisition.states import State
from backend.acquisition.steps import accuracy
from backend.projects.models import Label, LabelSet, Membership
from mltasks.phantom import generate_phantom
from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    acquisition_project,
    one_torch_thread_with_tmp_storage,
    scan_with_volume,
)
from tests.backend.test_acquisition_phases import answer_all, run_phase

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path, monkeypatch):
    monkeypatch.setattr("backend.core.jobs.send", lambda *a, **k: None)  # phases are run by hand here
    yield from one_torch_thread_with_tmp_storage(settings, tmp_path)


@pytest.fixture
def trusting(monkeypatch):
    """Accept any PSV-Dice relation: a one-epoch network's uncertainty is noise, and the
    check that refuses it has tests of its own (test_accuracy.py)."""
    monkeypatch.setattr(accuracy, "MAX_CORRELATION", 1.0)
    monkeypatch.setattr(accuracy, "MAX_PDC_ERROR", 1.0)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def post(client, url, data=None):
    response = client.post(url, data or {}, format="json")
    return response.status_code, (response.json() if response.content else None)


def run_step(project, lead, annotator) -> AcquisitionStep:
    """One whole step through the API and the worker phases, answered by a scripted annotator."""
    status, body = post(client_for(lead), f"/api/projects/{project.id}/steps/")
    assert status == 201, body
    step = AcquisitionStep.objects.get(pk=body["id"])
    for phase in (State.INFERRING, State.SELECTING):
        assert run_phase(step, phase) == "done"
    answer_all(step, annotator)
    for phase in (State.TRAINING, State.EVALUATING):
        assert run_phase(step, phase) == "done"
    step.refresh_from_db()
    assert step.state == State.DONE
    return step


def test_a_one_ct_project_measures_its_model_on_held_out_slices(trusting):
    project, lead, (annotator, _) = acquisition_project(n_pool=1, n_test=0, shape=(20, 64, 64), seed_fraction=None,
                                                        stop_target_dice=0.95)
    client = client_for(lead)
    base = f"/api/projects/{project.id}"
    status, held = post(client, f"{base}/held-out/", {"per_scan": 3})
    assert status == 201, held
    assert held["slices"] == 3 and held["evaluation_set"] == "held_out_slices"
    zs = held["scans"][0]["z"]
    status, seeded = post(client, f"{base}/training-set/seed/", {"fraction": 0.5})
    assert status == 201 and seeded["added"] > 0
    trained = set(TrainingSlice.objects.filter(project=project).values_list("z", flat=True))
    assert all(abs(t - z) > HELD_OUT_MARGIN for t in trained for z in zs)  # never next to a held-out slice

    step = run_step(project, lead, annotator)
    queried = set(Query.objects.filter(step=step).values_list("z", flat=True))
    assert all(abs(q - z) > HELD_OUT_MARGIN for q in queried for z in zs)
    assert set(zs).isdisjoint(TrainingSlice.objects.filter(project=project).values_list("z", flat=True))

    models = {m["step"]: m for m in client.get(f"{base}/models/").json()}
    metrics = models[step.id]["metrics"]
    assert metrics["evaluated_on"]["set"] == "held_out_slices"
    assert sorted(z for _, z in metrics["evaluated_on"]["slices"]) == zs
    assert [row["z"] for row in metrics["rows"]] == zs
    structures = metrics["structures"]
    measured = [s for s in structures.values() if s["status"]["dice"] == "ok"]
    assert measured and all(0.0 <= s["dice"] <= 1.0 for s in measured)
    assert any(s["status"]["psv"] == "ok" and s["psv"] >= 0.0 for s in structures.values())
    # Every figure has a status, and a missing one says why instead of showing a number.
    for s in structures.values():
        for name in accuracy.FIGURES:
            assert s["status"][name] in ("ok", "unavailable")
            assert (s[name] is None) == (s["status"][name] == "unavailable")
            assert (name in s["reasons"]) == (s["status"][name] == "unavailable")
    assert models[step.id]["calibration"] is not None
    assert metrics["status"]["calibration"] == "ok"
    assert 0.0 <= metrics["calibration_mae_held_out"] <= 1.0  # leave-one-slice-out, three slices
    assert any(s["status"]["predicted_dice"] == "ok" for s in structures.values())
    rule = metrics["stopping_rule"]
    assert metrics["status"]["stopping_rule"] == "ok" and rule["target"] == 0.95 and rule["muscles"] > 0
    assert rule["reached"] is False and rule["below"] and step.stop_reached is False
    # Model 0 is trained inside the step's inferring phase and never evaluated: it says so.
    assert models[None]["metrics"]["status"]["evaluation"] == "unavailable"
    assert "model 0" in models[None]["metrics"]["reasons"]["evaluation"]


def two_structure_project(**fields):
    """One phantom CT labelled with two structures (bone, muscle): a tiny net learns both in
    one epoch, so the stopping rule can be seen to hold. (project, lead, annotator)."""
    label_set = LabelSet.objects.create(name="bone and muscle")
    Label.objects.create(label_set=label_set, value=1, name="bone", kind="bone", colour="#eeeeee")
    Label.objects.create(label_set=label_set, value=2, name="muscle", kind="muscle", colour="#cc0000")
    pool = PoolFactory()
    project = ProjectFactory(label_set=label_set, pools=[pool], network_profile="tiny",
                             network_config={"max_epochs": 3, "batch_size": 8, "augment": False, "val_samples": 2,
                                             "patience": 0},
                             slices_per_step=2, k_uncertain=4, mc_samples=2, tau=1e-3, **fields)
    ph = generate_phantom(100, shape=(20, 64, 64))
    labels = np.where(ph.labels == 0, 0, np.where(ph.labels <= 3, 1, 2)).astype(np.uint8)
    scan_with_volume(pool, ph.hu, name="the only CT", labels=labels, label_set=label_set)
    lead = MembershipFactory(project=project, role=Membership.Role.LEAD).user
    annotator = MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user
    return project, lead, annotator


def test_the_stopping_rule_on_held_out_slices_holds_the_next_step(trusting):
    project, lead, annotator = two_structure_project(stop_target_dice=0.0)
    client = client_for(lead)
    base = f"/api/projects/{project.id}"
    assert post(client, f"{base}/held-out/", {"per_scan": 4})[0] == 201
    assert post(client, f"{base}/training-set/seed/", {"fraction": 0.5})[0] == 201
    step = run_step(project, lead, annotator)
    metrics = ModelVersion.objects.get(step=step).metrics
    assert metrics["stopping_rule"] == {"reached": True, "target": 0.0, "muscles": 1, "below": []}
    assert step.stop_reached is True
    status, body = post(client, f"{base}/steps/")
    assert (status, body["code"]) == (409, "stop_reached")
    assert post(client, f"{base}/steps/", {"force": True})[0] == 201


# --- choosing, listing, clearing ----------------------------------------------------------


def test_held_out_slices_are_spread_along_the_scan_and_kept_out_of_seeding():
    project, lead, _ = acquisition_project(n_pool=2, n_test=0, shape=(24, 32, 32), seed_fraction=None)
    client = client_for(lead)
    base = f"/api/projects/{project.id}"
    status, body = post(client, f"{base}/held-out/", {"per_scan": 4})
    assert status == 201, body
    assert body["slices"] == 8 and [len(s["z"]) for s in body["scans"]] == [4, 4]
    for scan in body["scans"]:
        gaps = np.diff(scan["z"])
        assert gaps.min() >= 3 and scan["z"][0] < 6 and scan["z"][-1] > 17  # spread over the scan
    assert client.get(f"{base}/held-out/").json() == body
    assert client.get(f"{base}/training-set/").json()["held_out"] == 8
    assert post(client, f"{base}/training-set/seed/")[0] == 201  # every labelled slice that may be
    seeded = set(TrainingSlice.objects.filter(project=project).values_list("scan_id", "z"))
    assert seeded and seeded.isdisjoint(held_out_excluded(project))
    assert len(seeded) == 2 * 24 - len(held_out_excluded(project))
    # A new choice replaces the old one and keeps away from training slices: only the slices
    # that were held out (their neighbours were never seeded) qualify again.
    status, again = post(client, f"{base}/held-out/", {"per_scan": 8})
    assert status == 201 and again["scans"] == body["scans"]
    assert client.delete(f"{base}/held-out/").status_code == 204
    assert not HeldOutSlice.objects.filter(project=project).exists()


def test_once_every_labelled_slice_is_seeded_none_can_be_held_out_and_nothing_changes():
    project, lead, _ = acquisition_project(n_pool=1, n_test=0, seed_fraction=None)
    client = client_for(lead)
    assert post(client, f"/api/projects/{project.id}/training-set/seed/")[0] == 201
    scan = project.pools.get().scans.get()
    HeldOutSlice.objects.create(project=project, scan=scan, z=0)  # left by an earlier choice
    status, body = post(client, f"/api/projects/{project.id}/held-out/", {"per_scan": 2})
    assert (status, body["code"]) == (409, "no_held_out_candidates")
    assert "phantom 0" in body["detail"] and "in the training set" in body["detail"]
    assert "before seeding" in body["detail"]
    assert list(HeldOutSlice.objects.values_list("z", flat=True)) == [0]


@pytest.mark.parametrize(("body", "message"), [
    ({"per_scan": 0}, "greater than or equal to 1"),
    ({"per_scan": 101}, "less than or equal to 100"),
    ({"per_scan": "six"}, "valid integer"),
])
def test_a_bad_held_out_request_says_why_and_stores_nothing(body, message):
    project, lead, _ = acquisition_project(n_pool=1, n_test=0, seed_fraction=None)
    status, answer = post(client_for(lead), f"/api/projects/{project.id}/held-out/", body)
    assert (status, answer["code"]) == (400, "invalid")
    assert message in answer["errors"]["per_scan"][0] and "per_scan" in answer["detail"]
    assert not HeldOutSlice.objects.exists()


def test_only_leads_handle_held_out_slices_and_not_while_a_step_runs():
    project, lead, (annotator, _) = acquisition_project(n_pool=1, n_test=0, seed_fraction=0.25)
    url = f"/api/projects/{project.id}/held-out/"
    assert post(client_for(annotator), url)[0] == 403
    assert client_for(annotator).get(url).status_code == 403
    assert post(client_for(UserFactory()), url)[0] == 404
    assert post(client_for(lead), url, {"per_scan": 2})[0] == 201
    before = list(HeldOutSlice.objects.values_list("scan_id", "z"))
    AcquisitionStep.objects.create(project=project, number=1, state=State.TRAINING, strategy="tau", tau=1e-3,
                                   slices_per_step=1, k_uncertain=2, mc_samples=2)
    status, body = post(client_for(lead), url, {"per_scan": 1})
    assert (status, body["code"]) == (409, "step_running")
    assert "step 1 is training" in body["detail"]
    assert client_for(lead).delete(url).status_code == 409
    assert list(HeldOutSlice.objects.values_list("scan_id", "z")) == before


def test_without_labels_in_the_pool_nothing_can_be_held_out_and_the_answer_says_where_they_are():
    project, lead, _ = acquisition_project(n_pool=0, n_test=1, seed_fraction=None)
    status, body = post(client_for(lead), f"/api/projects/{project.id}/held-out/")
    assert (status, body["code"]) == (409, "no_held_out_candidates")
    assert "test scans" in body["detail"] and "phantom 0" in body["detail"]
    assert not HeldOutSlice.objects.exists()
