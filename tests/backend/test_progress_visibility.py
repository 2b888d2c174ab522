"""A lead can see what the gpu worker does (issue 21, items 3 and 4): model 0's training is a
named sub-phase with its own percent and ETA; a whole-scan segmentation reports progress and
its place on the gpu queue, and says why it does not move."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from backend.acquisition.models import AcquisitionStep, Segmentation
from backend.acquisition.outputs import segmentation as segmentation_module
from backend.acquisition.outputs.segmentation import segmentation_request, segmentation_run
from backend.acquisition.states import State
from backend.acquisition.steps.progress import PhaseReporter
from backend.acquisition.steps.services import step_start
from tests.backend.factories import (
    MembershipFactory,
    ProjectFactory,
    acquisition_project,
    one_torch_thread_with_tmp_storage,
)
from tests.backend.test_acquisition_phases import RUNNER, run_phase

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path, monkeypatch):
    monkeypatch.setattr("backend.core.jobs.send", lambda *a, **k: None)  # phases are run by hand here
    yield from one_torch_thread_with_tmp_storage(settings, tmp_path)


@pytest.fixture
def events(monkeypatch):
    seen = []
    monkeypatch.setattr("backend.acquisition.events.publish", lambda group, payload: seen.append(payload))
    return seen


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_model_0_trains_in_a_named_subphase_with_its_own_percent_and_eta(events):
    project, lead, _ = acquisition_project(n_test=0)
    step = step_start(project=project, user=lead)
    assert run_phase(step, State.INFERRING) == "done"
    progress = [e for e in events if e["type"] == "acquisition.progress"]
    names = [e["subphase"] for e in progress]
    assert names[0] == "first_model" and names[-1] == "ranking"
    assert names == sorted(names, key=["first_model", "ranking"].index)  # one after the other
    first = [e for e in progress if e["subphase"] == "first_model"]
    assert all(e["percent"] <= 50.0 for e in first)
    assert first[-1]["subphase_percent"] == 100.0 and first[-1]["subphase_eta_seconds"] is not None
    ranking = [e for e in progress if e["subphase"] == "ranking"]
    assert ranking[0]["subphase_percent"] == 0.0 and ranking[-1]["subphase_percent"] == 100.0
    step.refresh_from_db()
    assert (step.state, step.subphase) == (State.SELECTING, "")  # a transition clears it


def test_the_step_api_names_the_running_subphase_with_its_percent_and_eta(events):
    project, lead, _ = acquisition_project(n_test=0)
    step = step_start(project=project, user=lead)
    AcquisitionStep.objects.filter(pk=step.pk).update(runner=RUNNER, heartbeat=timezone.now())
    reporter = PhaseReporter(step_id=step.id, project_id=project.id, phase=State.INFERRING, runner=RUNNER)
    reporter.segment(0, 50, "training the first model on the initial training set", subphase="first_model")
    reporter.subphase_started -= 10.0  # ten seconds of training so far
    reporter.update(0.4, force=True)
    body = client_for(lead).get(f"/api/projects/{project.id}/steps/{step.id}/").json()
    assert (body["state"], body["subphase"]) == ("inferring", "first_model")
    assert body["subphase_label"] == "training model 0 on the initial training set"
    assert (body["percent"], body["subphase_percent"]) == (20.0, 40.0)
    assert body["subphase_eta_seconds"] == pytest.approx(15.0, rel=0.05)  # 10 s for 40 %: 15 s to go
    assert body["queue"] is None  # a worker holds it
    reporter.segment(50, 100, "MC-dropout inference", subphase="ranking")
    body = client_for(lead).get(f"/api/projects/{project.id}/steps/{step.id}/").json()
    assert (body["subphase"], body["subphase_percent"], body["percent"]) == ("ranking", 0.0, 50.0)


def test_a_whole_scan_segmentation_reports_progress(events, monkeypatch):
    project, lead, _ = acquisition_project(n_pool=1, n_test=1)
    step = step_start(project=project, user=lead)
    assert run_phase(step, State.INFERRING) == "done"  # model 0
    monkeypatch.setattr(segmentation_module, "WRITE_EVERY", 0.0)  # every batch of slices reports
    seg = segmentation_request(project=project, scan=project.test_scans.get(), user=lead)
    events.clear()
    assert segmentation_run(segmentation_id=seg.id) == "done"
    reports = [e for e in events if e["type"] == "acquisition.segmentation"]
    assert reports[0]["status"] == "running" and reports[-1]["status"] == "done"
    percents = [e["percent"] for e in reports if e["status"] == "running"]
    assert percents == sorted(percents) and any(0.0 < p < 100.0 for p in percents) and percents[-1] == 100.0
    assert any(e["eta_seconds"] is not None for e in reports if e["status"] == "running")
    seg.refresh_from_db()
    assert seg.percent == 100.0 and seg.started is not None and seg.started <= seg.finished
    body = client_for(lead).get(f"/api/projects/{project.id}/segmentations/{seg.id}/").json()
    assert body["percent"] == 100.0 and body["queue"] is None
    assert all(row["status"]["predicted_dice"] == "unavailable" for row in body["report"])
    assert "never evaluated" in body["report"][0]["reasons"]["predicted_dice"]  # model 0


def _step(project, number, state, *, runner=""):
    return AcquisitionStep.objects.create(project=project, number=number, state=state, strategy="tau", tau=1e-3,
                                          slices_per_step=1, k_uncertain=2, mc_samples=2, runner=runner)


def test_a_queued_segmentation_knows_its_place_and_what_runs_before_it():
    project, lead, _ = acquisition_project(n_pool=1, n_test=0, seed_fraction=None)
    other = ProjectFactory()
    scan = project.pools.get().scans.get()
    version = project.model_versions.create(number=0, checkpoint="x.pt")
    _step(project, 1, State.TRAINING, runner="worker@gpu|42")  # running
    _step(other, 1, State.INFERRING)  # queued before
    Segmentation.objects.create(project=project, model_version=version, scan=scan)  # queued before
    seg = Segmentation.objects.create(project=project, model_version=version, scan=scan)
    body = client_for(lead).get(f"/api/projects/{project.id}/segmentations/{seg.id}/").json()
    assert body["status"] == "pending" and body["percent"] == 0.0
    assert body["queue"] == {
        "position": 3, "running": ["the training phase of step 1"], "ahead": 2,
        "waiting": "Waiting on the gpu queue: the training phase of step 1 is running now, and 2 more job(s) "
                   "are ahead of it."}


def test_a_segmentation_nobody_takes_says_to_check_the_worker():
    project, lead, _ = acquisition_project(n_pool=1, n_test=0, seed_fraction=None)
    scan = project.pools.get().scans.get()
    version = project.model_versions.create(number=0, checkpoint="x.pt")
    seg = Segmentation.objects.create(project=project, model_version=version, scan=scan)
    url = f"/api/projects/{project.id}/segmentations/{seg.id}/"
    assert client_for(lead).get(url).json()["queue"]["waiting"] == (
        "Sent to the gpu queue; a worker takes it in a moment.")
    Segmentation.objects.filter(pk=seg.pk).update(created=timezone.now() - timedelta(minutes=5))
    waiting = client_for(lead).get(url).json()["queue"]["waiting"]
    assert waiting.startswith("Next on the gpu queue, but no worker has taken it after 30")
    assert "check that a gpu worker is running" in waiting
    # Running, but silent for too long.
    Segmentation.objects.filter(pk=seg.pk).update(status="running", percent=40.0,
                                                  heartbeat=timezone.now() - timedelta(minutes=4))
    body = client_for(lead).get(url).json()
    assert body["queue"]["position"] == 0 and body["queue"]["waiting"].startswith("No progress for 24")


def test_a_queued_step_phase_shows_what_it_waits_behind():
    project, lead, _ = acquisition_project(n_pool=1, n_test=0, seed_fraction=None)
    other = ProjectFactory()
    MembershipFactory(project=other)
    other_version = other.model_versions.create(number=0, checkpoint="x.pt")
    Segmentation.objects.create(project=other, model_version=other_version, scan=project.pools.get().scans.get(),
                                status="running")
    step = _step(project, 1, State.EVALUATING)
    queue = client_for(lead).get(f"/api/projects/{project.id}/steps/{step.id}/").json()["queue"]
    assert queue["position"] == 1 and queue["running"] == ["a segmentation of another project"]
    assert queue["waiting"] == "Waiting on the gpu queue: a segmentation of another project is running now."
