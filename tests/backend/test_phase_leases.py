"""Phase leases (issue 15, item 7): a phase whose runner is gone is taken over, reported and cancellable.

A runner on this machine is checked by its process (pid + start time); elsewhere by its
heartbeat, which lapses after ``leases.LEASE_SECONDS``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from backend.acquisition.models import AcquisitionStep
from backend.acquisition.states import State
from backend.acquisition.steps import leases
from backend.acquisition.steps.phases import phase_execute
from backend.acquisition.steps.progress import LeaseKeeper
from backend.acquisition.steps.services import (
    Claim,
    step_cancel,
    step_claim_phase,
    step_start,
    steps_take_over_orphans,
)
from tests.backend.factories import (
    ProjectFactory,
    UserFactory,
    acquisition_project,
    use_tmp_storage,
)

OTHER_MACHINE = "00000000-0000-0000-0000-000000000000:1"


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def ended_process_runner(node: str = "worker@here") -> str:
    """The runner string a pool process on this machine wrote before it ended (as after kill -9)."""
    code = f"from backend.acquisition.steps.leases import this_process; print(this_process({node!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def step_in(state: str, *, runner: str = "", heartbeat=None, **fields) -> AcquisitionStep:
    return AcquisitionStep.objects.create(
        project=ProjectFactory(), number=1, state=state, strategy="uncertainty", tau=1e-3, slices_per_step=2,
        k_uncertain=4, mc_samples=2, runner=runner, heartbeat=heartbeat,
        transitions=[{"state": state, "at": timezone.now().isoformat()}], **fields)


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


# --- the lease rule ---------------------------------------------------------------------

def test_a_runner_names_a_live_process_and_stops_being_alive_when_it_ends():
    mine = leases.this_process("worker@here")
    assert leases.lease_gone(mine, None, timezone.now()) is None  # this process: alive whatever the heartbeat
    ended = ended_process_runner()
    assert leases.Runner.parse(ended).machine == leases.machine_key() != ""
    assert leases.lease_gone(ended, timezone.now(), timezone.now()) == (
        f"process {leases.Runner.parse(ended).pid} of worker@here has ended")


def test_a_killed_child_not_yet_reaped_and_a_reused_pid_count_as_ended():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{child.pid}/stat")
    deadline = time.monotonic() + 10
    while (state := stat.read_text().rsplit(")", 1)[1].split()[0]) != "Z":  # ended, not yet waited for
        assert time.monotonic() < deadline
        time.sleep(0.02)
    start = stat.read_text().rsplit(")", 1)[1].split()[19]
    zombie = str(leases.Runner("worker@here", child.pid, start, leases.machine_key()))
    assert state == "Z" and leases.lease_gone(zombie, timezone.now(), timezone.now()) is not None
    child.wait()
    me = leases.Runner.parse(leases.this_process("worker@here"))
    reused = str(leases.Runner(me.node, me.pid, str(int(me.start) + 1), me.machine))  # same pid, later start
    assert leases.lease_gone(reused, timezone.now(), timezone.now()) is not None


@pytest.mark.django_db
def test_a_phase_whose_process_ended_is_taken_over_although_its_heartbeat_is_fresh(caplog):
    dead = ended_process_runner()
    step = step_in(State.TRAINING, runner=dead, heartbeat=timezone.now())
    me = leases.this_process("worker@here")
    with caplog.at_level(logging.WARNING, logger="backend.acquisition.steps.services"):
        assert step_claim_phase(step_id=step.id, phase=State.TRAINING, runner=me) is Claim.TAKEN
    step.refresh_from_db()
    assert step.runner == me and step.state == State.TRAINING
    assert f"step {step.id}: training taken over by process" in caplog.text and "has ended" in caplog.text


@pytest.mark.django_db
@pytest.mark.parametrize("runner", [f"worker@there|4242|99|{OTHER_MACHINE}", "worker@there|4242"])
def test_a_phase_on_another_machine_is_taken_over_once_its_heartbeat_lapses(runner):
    step = step_in(State.TRAINING, runner=runner, heartbeat=ago(leases.LEASE_SECONDS - 5))
    assert step_claim_phase(step_id=step.id, phase=State.TRAINING, runner="me|1") is Claim.HELD
    AcquisitionStep.objects.filter(pk=step.pk).update(heartbeat=ago(leases.LEASE_SECONDS + 5))
    assert step_claim_phase(step_id=step.id, phase=State.TRAINING, runner="me|1") is Claim.TAKEN
    step.refresh_from_db()
    assert step.runner == "me|1"


@pytest.mark.django_db
def test_a_live_process_on_this_machine_keeps_its_phase_however_slow_its_reports():
    alive = leases.this_process("worker@here")  # the test process itself
    step = step_in(State.TRAINING, runner=alive, heartbeat=ago(600))
    assert step_claim_phase(step_id=step.id, phase=State.TRAINING, runner="other@here|1") is Claim.HELD
    step.refresh_from_db()
    assert step.runner == alive and step.heartbeat < ago(590)  # nothing written


@pytest.mark.django_db
def test_a_claim_of_a_phase_the_step_has_left_does_nothing():
    step = step_in(State.SELECTING, runner="", heartbeat=None)
    assert step_claim_phase(step_id=step.id, phase=State.TRAINING, runner="me|1") is Claim.DONE
    step.refresh_from_db()
    assert step.runner == "" and step.heartbeat is None


@pytest.mark.django_db
def test_the_redelivered_task_takes_over_the_orphaned_phase_and_runs_it():
    project, lead, _ = acquisition_project(n_pool=1, n_test=0)
    step = step_start(project=project, user=lead)
    AcquisitionStep.objects.filter(pk=step.pk).update(runner=ended_process_runner(), heartbeat=timezone.now(),
                                                      percent=18.0)
    assert phase_execute(step_id=step.id, phase=State.INFERRING, runner=leases.this_process("w@here")) == "done"
    step.refresh_from_db()
    assert step.state in (State.SELECTING, State.ANNOTATING, State.TRAINING)
    assert step.inference_file


# --- cancel -----------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("orphaned", ["ended process", "lapsed heartbeat"])
def test_cancel_of_a_step_whose_runner_is_gone_finishes_at_once(orphaned):
    runner, beat = ((ended_process_runner(), timezone.now()) if orphaned == "ended process"
                    else ("worker@there|7", ago(leases.LEASE_SECONDS + 5)))
    step = step_in(State.TRAINING, runner=runner, heartbeat=beat, percent=18.0)
    lead = UserFactory()
    cancelled = step_cancel(step=step, user=lead, reason="stuck at 18 %")
    step.refresh_from_db()
    assert cancelled.state == step.state == State.CANCELLED
    assert step.reason == "stuck at 18 %" and step.finished is not None and step.runner == ""
    assert [t["state"] for t in step.transitions] == [State.TRAINING, State.CANCELLED]


@pytest.mark.django_db
def test_cancel_of_a_step_whose_runner_lives_only_asks_it_to_stop():
    step = step_in(State.TRAINING, runner=leases.this_process("worker@here"), heartbeat=timezone.now())
    step_cancel(step=step, user=UserFactory(), reason="wrong tau")
    step.refresh_from_db()
    assert step.state == State.TRAINING and step.cancel_requested and step.finished is None


# --- health -----------------------------------------------------------------------------

@pytest.mark.django_db
def test_health_reports_a_phase_without_a_live_runner(client, admin_user):
    step = step_in(State.TRAINING, runner=ended_process_runner(), heartbeat=timezone.now(), percent=18.0)
    client.force_login(admin_user)  # staff see which step and process
    response = client.get(reverse("health"))
    body = response.json()
    assert response.status_code == 503 and body["status"] == "degraded"
    assert body["checks"]["phases"]["ok"] is False
    detail = body["checks"]["phases"]["detail"]
    assert f"step 1 of project {step.project_id} is training but its runner is gone" in detail
    assert "has ended" in detail and "cancel the step" in detail
    step.refresh_from_db()
    assert step.state == State.TRAINING and step.percent == 18.0  # health reports, it changes nothing


@pytest.mark.django_db
def test_health_tells_anyone_else_only_how_many_phases_lost_their_runner(client):
    step = step_in(State.TRAINING, runner=ended_process_runner(), heartbeat=timezone.now())
    response = client.get(reverse("health"))  # no login: a load balancer's probe
    detail = response.json()["checks"]["phases"]["detail"]
    assert response.status_code == 503
    assert detail.startswith("1 running phase(s) have no live runner.") and "cancel the step" in detail
    runner = leases.Runner.parse(step.runner)
    for secret in (f"project {step.project_id}", str(runner.pid), runner.node):
        assert secret not in detail


@pytest.mark.django_db
def test_health_is_content_with_a_phase_whose_runner_lives(client):
    step_in(State.TRAINING, runner=leases.this_process("worker@here"), heartbeat=timezone.now())
    step_in(State.INFERRING, runner="", heartbeat=None)  # queued: no runner yet, nothing to report
    body = client.get(reverse("health")).json()
    assert body["checks"]["phases"] == {"ok": True, "detail": "every running phase has a live runner",
                                        "ms": body["checks"]["phases"]["ms"]}


# --- the periodic sweep of each worker ---------------------------------------------------

@pytest.mark.django_db
def test_the_sweep_reschedules_orphans_of_vanished_workers_and_leaves_the_rest(
        monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("backend.core.jobs.send", lambda name, step_id, **k: sent.append((name, step_id)))
    vanished = step_in(State.TRAINING, runner=f"worker@gone|5|9|{OTHER_MACHINE}", heartbeat=ago(40))
    mine = step_in(State.EVALUATING, runner=ended_process_runner("me@here"), heartbeat=ago(3))
    alive = step_in(State.INFERRING, runner=leases.this_process("other@here"), heartbeat=ago(3))
    queued = step_in(State.SELECTING, runner="", heartbeat=None)
    stopping = step_in(State.TRAINING, runner=f"worker@gone|6|9|{OTHER_MACHINE}", heartbeat=ago(40),
                       cancel_requested=True, reason="wrong tau")
    with django_capture_on_commit_callbacks(execute=True):
        resumed = steps_take_over_orphans(me="me@here")
    # This worker's own dead child is left to its redelivered task until its heartbeat lapses too.
    assert resumed == [vanished.id, stopping.id]
    assert sent == [("acquisition.step_train", vanished.id)]
    vanished.refresh_from_db()
    stopping.refresh_from_db()
    assert vanished.runner == "" and vanished.state == State.TRAINING
    assert stopping.state == State.CANCELLED and stopping.reason == "wrong tau"
    for step in (mine, alive, queued):
        before = step.runner
        step.refresh_from_db()
        assert step.runner == before
    AcquisitionStep.objects.filter(pk=mine.pk).update(heartbeat=ago(leases.LEASE_SECONDS + 1))
    with django_capture_on_commit_callbacks(execute=True):
        assert steps_take_over_orphans(me="me@here") == [mine.id]


# --- the heartbeat thread ---------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_the_lease_keeper_renews_the_heartbeat_without_progress_reports_and_stops_with_the_phase():
    runner = leases.this_process("worker@here")
    step = step_in(State.TRAINING, runner=runner, heartbeat=ago(20))
    with LeaseKeeper(step_id=step.id, phase=State.TRAINING, runner=runner, every=0.05) as keeper:
        deadline = time.monotonic() + 10
        while keeper.renewals < 2:  # the work here makes no progress report at all
            assert time.monotonic() < deadline, "no heartbeat renewed"
            time.sleep(0.05)
        step.refresh_from_db()
        assert step.heartbeat > ago(5)
        AcquisitionStep.objects.filter(pk=step.pk).update(state=State.EVALUATING, runner="")
        time.sleep(0.3)
        renewals = keeper.renewals
    assert not keeper._thread.is_alive()
    step.refresh_from_db()
    assert keeper.renewals == renewals and step.runner == ""  # a lost lease is not written again
