"""A whole acquisition step on tiny phantoms, phase by phase, as the worker runs it."""

from __future__ import annotations

import io
import zipfile
from unittest import mock

import numpy as np
import pytest
from django.test import TestCase
from django.utils import timezone

from backend.acquisition import codec
from backend.acquisition.annotation.services import query_claim_next, query_submit
from backend.acquisition.models import AcquisitionStep, ModelVersion, Query, TrainingSlice
from backend.acquisition.outputs.export import training_set_zip
from backend.acquisition.selectors import mac_summary
from backend.acquisition.states import State
from backend.acquisition.steps.phases import phase_execute
from backend.acquisition.steps.progress import PhaseReporter
from backend.acquisition.steps.services import step_cancel, step_start, steps_resume_stalled
from backend.imaging.volumes import reference_labels
from tests.backend.factories import (
    acquisition_project,
    one_torch_thread_with_tmp_storage,
)

pytestmark = pytest.mark.django_db

RUNNER = "test-worker|1"


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    yield from one_torch_thread_with_tmp_storage(settings, tmp_path)


def answer_all(step: AcquisitionStep, user) -> int:
    """Answer every open query of ``step`` from the reference labels, as a scripted annotator.

    Each answer's after-commit work runs as it would after a real commit (the test's
    transaction never commits): the last one moves the step to training. The training
    task is not sent: the tests run each phase themselves.
    """
    n = 0
    while (query := query_claim_next(project=step.project, user=user)) is not None:
        shape = (query.height, query.width)
        mask = codec.unpack_mask(query.mask, shape)
        ref = np.asarray(reference_labels(query.scan.reference_labels.get())[query.z])
        with mock.patch("backend.core.jobs.send"), TestCase.captureOnCommitCallbacks(execute=True):
            query_submit(query=query, user=user, labels=np.where(mask, ref, 255).astype(np.uint8).ravel(),
                         seconds_spent=3.0)
        n += 1
    return n


def run_phase(step: AcquisitionStep, phase: str) -> str:
    return phase_execute(step_id=step.id, phase=phase, runner=RUNNER)


def run_whole_step(project, lead, annotator) -> AcquisitionStep:
    """One step from start to done in this process: every phase, every query answered by ``annotator``."""
    step = step_start(project=project, user=lead)
    for phase in (State.INFERRING, State.SELECTING):
        assert run_phase(step, phase) == "done", phase
    answer_all(step, annotator)
    for phase in (State.TRAINING, State.EVALUATING):
        assert run_phase(step, phase) == "done", phase
    step.refresh_from_db()
    return step


def test_a_step_runs_through_every_phase_and_records_mac_dice_and_predicted_dice():
    project, lead, (annotator, _) = acquisition_project()
    seeded = TrainingSlice.objects.filter(project=project).count()
    step = step_start(project=project, user=lead)
    assert step.state == State.INFERRING

    assert run_phase(step, State.INFERRING) == "done"
    step.refresh_from_db()
    assert step.state == State.SELECTING
    assert ModelVersion.objects.filter(project=project, number=0).exists()  # the bootstrap model

    assert run_phase(step, State.SELECTING) == "done"
    step.refresh_from_db()
    assert len(step.selected) == 2
    assert len(step.candidates) == 4
    chosen = {tuple(s) for s in step.selected}
    assert chosen <= {(c[0], c[1]) for c in step.candidates}  # D_r is taken from D_c
    labelled = set(TrainingSlice.objects.filter(project=project).values_list("scan_id", "z"))
    assert not chosen & labelled  # only unlabelled slices are proposed
    assert step.state in (State.ANNOTATING, State.TRAINING)

    answered = answer_all(step, annotator)
    step.refresh_from_db()
    assert step.state == State.TRAINING
    assert TrainingSlice.objects.filter(project=project).count() == seeded + 2
    assert answered == Query.objects.filter(step=step, n_queried__gt=0).count()

    assert run_phase(step, State.TRAINING) == "done"
    assert run_phase(step, State.EVALUATING) == "done"
    step.refresh_from_db()
    assert step.state == State.DONE
    version = ModelVersion.objects.get(step=step)
    structures = version.metrics["structures"]
    assert set(structures) == {str(v) for v in range(1, 23)}
    assert all(0.0 <= row["dice"] <= 1.0 for row in structures.values())
    assert version.metrics["evaluated_on"]["set"] == "test_scans"  # whole test scans, one row each
    assert version.metrics["rows"] and version.config["net"]["matrix"] == 64
    held_out = version.metrics["calibration_mae_held_out"]
    if len(version.metrics["rows"]) < 2:
        assert held_out is None
    else:
        assert 0.0 <= held_out <= 1.0
    # Predicted Dice exists wherever the calibration could be fitted and the structure was found.
    if version.calibration:
        assert any(row["predicted_dice"] is not None for row in structures.values())
    mac = mac_summary(project)
    queries = list(Query.objects.filter(step=step))
    expected = sum(q.n_queried for q in queries) / sum(q.n_pixels for q in queries)
    assert mac["steps"][0]["mac"] == pytest.approx(expected)
    assert [t["state"] for t in step.transitions][:3] == ["created", "inferring", "selecting"]


def test_a_redelivered_phase_task_does_nothing_and_progress_reaches_the_project_group(
        monkeypatch, django_capture_on_commit_callbacks):
    project, lead, _ = acquisition_project(n_test=0)
    step = step_start(project=project, user=lead)
    events = []
    monkeypatch.setattr("backend.acquisition.events.publish", lambda group, payload: events.append((group, payload)))
    monkeypatch.setattr("backend.core.jobs.send", lambda *a, **k: None)  # do not run the next phase here
    with django_capture_on_commit_callbacks(execute=True):
        assert run_phase(step, State.INFERRING) == "done"
    assert {group for group, _ in events} == {f"project-{project.id}"}
    progress = [p for _, p in events if p["type"] == "acquisition.progress"]
    assert progress[-1]["phase"] == "inferring" and progress[-1]["percent"] == 100.0
    assert set(progress[-1]) == {"type", "step", "phase", "percent", "eta_seconds", "detail", "info", "subphase",
                                 "subphase_percent", "subphase_eta_seconds"}
    assert events[-1][1] == {"type": "acquisition.state", "step": step.id, "number": 1, "state": "selecting",
                             "reason": "", "stop_reached": False}
    assert run_phase(step, State.INFERRING) == "skipped"
    step.refresh_from_db()
    assert step.state == State.SELECTING


def test_a_phase_held_by_a_live_worker_is_not_run_twice():
    project, lead, _ = acquisition_project(n_test=0)
    step = step_start(project=project, user=lead)
    AcquisitionStep.objects.filter(pk=step.pk).update(runner="other|7", heartbeat=timezone.now())
    assert run_phase(step, State.INFERRING) == "skipped"


def test_cancel_during_a_phase_stops_it_at_the_next_progress_report(monkeypatch):
    project, lead, _ = acquisition_project(n_test=0)
    step = step_start(project=project, user=lead)
    original = PhaseReporter.update

    def cancel_then_report(self, fraction, **kwargs):
        step_cancel(step=AcquisitionStep.objects.get(pk=self.step_id), user=lead, reason="wrong tau")
        self._beat = 0.0  # make this report check the flag now
        return original(self, fraction, **kwargs)

    monkeypatch.setattr(PhaseReporter, "update", cancel_then_report)
    assert run_phase(step, State.INFERRING) == "cancelled"
    step.refresh_from_db()
    assert step.state == State.CANCELLED
    assert step.reason == "wrong tau"
    assert not step.inference_file


def test_a_phase_orphaned_by_a_killed_worker_is_rescheduled(django_capture_on_commit_callbacks, monkeypatch):
    project, lead, _ = acquisition_project(n_test=0)
    step = step_start(project=project, user=lead)
    AcquisitionStep.objects.filter(pk=step.pk).update(runner="dead@host|123")
    sent = []
    monkeypatch.setattr("backend.core.jobs.send", lambda name, step_id, **k: sent.append((name, step_id)))
    with django_capture_on_commit_callbacks(execute=True):
        resumed = steps_resume_stalled(live_workers={"alive@host"}, me="new@host")
    assert resumed == [step.id]
    assert sent == [("acquisition.step_infer", step.id)]
    # A phase whose runner is alive elsewhere (and reported lately) is left alone.
    AcquisitionStep.objects.filter(pk=step.pk).update(runner="alive@host|9", heartbeat=timezone.now())
    assert steps_resume_stalled(live_workers={"alive@host"}, me="new@host") == []


def test_training_set_export_keeps_every_pixels_provenance(tmp_path):
    project, lead, (annotator, _) = acquisition_project(n_test=0)
    step = step_start(project=project, user=lead)
    run_phase(step, State.INFERRING)
    run_phase(step, State.SELECTING)
    answer_all(step, annotator)
    archive = zipfile.ZipFile(io.BytesIO(training_set_zip(project)))
    listing = archive.read("slices.csv").decode().splitlines()
    rows = [line.split(",") for line in listing[1:]]
    assert len(rows) == TrainingSlice.objects.filter(project=project).count()
    for query in Query.objects.filter(step=step):
        row = next(r for r in rows if int(r[0]) == query.scan_id and int(r[2]) == query.z)
        assert row[3] == "query"
        assert (int(row[6]), int(row[7])) == (query.n_queried, query.n_pixels - query.n_queried)
    import SimpleITK as sitk

    path = tmp_path / "provenance.nii.gz"
    path.write_bytes(archive.read(f"scan-{query.scan_id}-provenance.nii.gz"))
    provenance = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    mask = codec.unpack_mask(query.mask, (query.height, query.width))
    assert np.array_equal(provenance[query.z], np.where(mask, 2, 1))


@pytest.mark.parametrize(("config", "warm"), [({}, True), ({"warm_start": False}, False), ({"width": 6}, False)])
def test_training_starts_from_the_current_model_unless_told_not_to_or_the_net_changed(monkeypatch, config, warm):
    from backend.acquisition import ml_adapter

    project, lead, (annotator, _) = acquisition_project()
    step = step_start(project=project, user=lead)
    run_phase(step, State.INFERRING)
    run_phase(step, State.SELECTING)
    answer_all(step, annotator)
    project.network_config = {**project.network_config, **config}
    project.save(update_fields=["network_config"])
    seen = {}
    train_model = ml_adapter.train_model

    def spy(*args, init_model=None, **kwargs):
        seen["init"] = init_model
        return train_model(*args, init_model=init_model, **kwargs)

    monkeypatch.setattr(ml_adapter, "train_model", spy)
    assert run_phase(step, State.TRAINING) == "done"
    assert (seen["init"] is not None) == warm
