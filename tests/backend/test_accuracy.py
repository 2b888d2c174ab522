"""Every accuracy figure has a status; an uncertainty that is no signal yet is said so (issue 21).

Rows are built by hand (``steps.accuracy.Row``), so these tests need no network.
"""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from backend.acquisition.models import AcquisitionStep, ModelVersion
from backend.acquisition.states import State
from backend.acquisition.steps.accuracy import (
    FIGURES,
    MAX_PDC_ERROR,
    Row,
    accuracy_metrics,
    report_calibration,
    report_statuses,
)
from backend.acquisition.steps.evaluation import NOTHING_TO_EVALUATE
from tests.backend.factories import LabelSetFactory, MembershipFactory, ProjectFactory

LABELS = [(1, "femur", "bone"), (2, "iliacus", "muscle"), (3, "psoas", "muscle"), (4, "sartorius", "muscle")]
N_CLASSES = 5


def row(z: int, dice: dict[int, float], psv: dict[int, float], *, absent=(), missed=()) -> Row:
    """A held-out slice: ``dice`` and ``psv`` per structure; ``absent`` from reference and
    prediction; ``missed``: in the reference, not predicted."""
    in_ref = np.array([True] + [v not in absent for v in range(1, N_CLASSES)])
    in_pred = np.array([True] + [v not in absent and v not in missed for v in range(1, N_CLASSES)])
    metrics = {v: {"dice": 1.0 if v in absent else (0.0 if v in missed else dice[v]),
                   "asd": 0.0 if v in absent else (float("inf") if v in missed else 1.5)} for v in range(1, N_CLASSES)}
    psvs = np.array([0.0] + [psv.get(v, np.nan) if in_pred[v] else np.nan for v in range(1, N_CLASSES)])
    return Row("held_out", 7, "the only CT", z, metrics, psvs, in_ref, in_pred)


def good_rows() -> list[Row]:
    """Dice falls as PSV rises, along Dice = 0.95 - 20 x PSV."""
    rows = []
    for z, scale in ((10, 1.0), (30, 1.5), (50, 2.0)):
        psv = {v: 0.002 * v * scale for v in range(1, N_CLASSES)}
        rows.append(row(z, {v: 0.95 - 20 * p for v, p in psv.items()}, psv))
    return rows


def test_psv_that_rises_with_dice_gives_a_warning_instead_of_a_predicted_dice():
    rows = []
    for z, scale in ((10, 1.0), (30, 1.5), (50, 2.0)):
        psv = {v: 0.002 * v * scale for v in range(1, N_CLASSES)}
        rows.append(row(z, {v: 0.3 + 20 * p for v, p in psv.items()}, psv))  # more uncertain, more accurate
    result = accuracy_metrics(rows, LABELS, target=0.5, nothing_why=NOTHING_TO_EVALUATE)
    signal = result.metrics["uncertainty"]
    assert signal["usable"] is False and signal["correlation"] > 0.9
    assert signal["warning"].startswith("The uncertainty is not yet a usable signal: PSV and Dice correlate the "
                                        "wrong way on the held-out slices (r = +")
    assert result.calibration is not None  # the line is kept for the PSV chart
    for s in result.metrics["structures"].values():
        assert s["predicted_dice"] is None and s["status"]["predicted_dice"] == "unavailable"
        assert s["reasons"]["predicted_dice"] == signal["warning"]
        assert s["status"]["dice"] == "ok"
    assert result.metrics["stopping_rule"]["reached"] is False and result.stop_reached is False
    assert result.metrics["status"]["stopping_rule"] == "unavailable"
    assert result.metrics["reasons"]["stopping_rule"] == signal["warning"]


def test_a_predicted_dice_far_from_the_held_out_dice_is_not_given():
    rows = good_rows()
    rows[1].metrics[2]["dice"] = 0.0  # one slice the line cannot predict
    rows[2].metrics[4]["dice"] = 1.0
    result = accuracy_metrics(rows, LABELS, target=0.5, nothing_why=NOTHING_TO_EVALUATE)
    signal = result.metrics["uncertainty"]
    assert signal["usable"] is False and signal["error_kind"] == "leave-one-out"
    assert signal["error"] == pytest.approx(result.metrics["calibration_mae_held_out"])
    assert signal["error"] > MAX_PDC_ERROR
    assert "the predicted Dice is off by" in signal["warning"]
    assert all(s["predicted_dice"] is None for s in result.metrics["structures"].values())


def test_a_usable_signal_gives_predicted_dice_and_applies_the_stopping_rule():
    result = accuracy_metrics(good_rows(), LABELS, target=0.5, nothing_why=NOTHING_TO_EVALUATE)
    metrics = result.metrics
    assert metrics["uncertainty"]["usable"] is True and metrics["uncertainty"]["warning"] is None
    assert metrics["calibration_mae_held_out"] == pytest.approx(0.0, abs=1e-9)
    structures = metrics["structures"]
    assert structures["2"]["predicted_dice"] == pytest.approx(structures["2"]["dice"])
    assert metrics["status"] == {"calibration": "ok", "calibration_mae_held_out": "ok", "uncertainty": "ok",
                                 "stopping_rule": "ok"}
    assert metrics["reasons"] == {}
    assert metrics["stopping_rule"] == {"reached": True, "target": 0.5, "muscles": 3, "below": []}
    strict = accuracy_metrics(good_rows(), LABELS, target=0.8, nothing_why=NOTHING_TO_EVALUATE)
    assert strict.stop_reached is False
    assert strict.metrics["stopping_rule"]["below"] == ["psoas", "sartorius"]


def test_a_structure_nobody_saw_has_no_dice_rather_than_one():
    rows = good_rows()
    for r in rows:  # sartorius lies outside every held-out slice; psoas is never found
        r.in_reference[4] = r.in_prediction[4] = False
        r.metrics[4] = {"dice": 1.0, "asd": 0.0}
        r.psv[4] = np.nan
        r.in_prediction[3] = False
        r.metrics[3] = {"dice": 0.0, "asd": float("inf")}
        r.psv[3] = np.nan
    structures = accuracy_metrics(rows, LABELS, target=0.5, nothing_why=NOTHING_TO_EVALUATE).metrics["structures"]
    sartorius, psoas = structures["4"], structures["3"]
    assert sartorius["dice"] is None and sartorius["asd"] is None
    assert sartorius["reasons"]["dice"] == "absent from the reference and the prediction on every held-out slice"
    assert psoas["dice"] == 0.0 and psoas["status"]["dice"] == "ok"  # in the reference, missed: a real 0
    assert psoas["reasons"]["asd"] == "no held-out slice has it in both the reference and the prediction"
    assert psoas["reasons"]["psv"] == "the model predicted no pixel of it on the held-out slices"
    assert psoas["reasons"]["predicted_dice"] == "no PSV: the model predicted no pixel of it on the held-out slices"


def test_with_nothing_to_evaluate_on_every_figure_says_what_to_do():
    result = accuracy_metrics([], LABELS, target=0.8, nothing_why=NOTHING_TO_EVALUATE)
    metrics = result.metrics
    assert result.calibration is None and result.stop_reached is False
    assert metrics["evaluated_on"] == {"set": None, "rows": 0, "scans": 0, "slices": []}
    for s in metrics["structures"].values():
        assert all(s[name] is None and s["reasons"][name] == NOTHING_TO_EVALUATE for name in FIGURES)
    assert set(metrics["status"].values()) == {"unavailable"}
    assert "POST /api/projects/<id>/held-out/" in metrics["reasons"]["stopping_rule"]


def test_too_few_pairs_for_a_line_is_a_reason_not_a_line():
    rows = [row(10, {1: 0.9, 2: 0.8}, {1: 0.001, 2: 0.002}, absent=(3, 4))]
    metrics = accuracy_metrics(rows, LABELS, target=None, nothing_why=NOTHING_TO_EVALUATE).metrics
    assert metrics["status"]["calibration"] == "unavailable"
    assert metrics["reasons"]["calibration"].startswith("only 2 (PSV, Dice) pair(s) on the evaluation set")
    assert metrics["reasons"]["stopping_rule"] == "the project has no stop target (stop_target_dice)"


def test_a_segmentation_report_of_an_untrustworthy_model_has_no_predicted_dice():
    bad = accuracy_metrics([row(z, {v: 0.3 + 20 * 0.002 * v * k for v in range(1, 5)},
                                {v: 0.002 * v * k for v in range(1, 5)}) for z, k in ((1, 1), (2, 2), (3, 3))],
                           LABELS, target=None, nothing_why=NOTHING_TO_EVALUATE)
    calibration, why = report_calibration(bad.metrics, bad.calibration)
    assert calibration is None and why.startswith("The uncertainty is not yet a usable signal")
    rows = report_statuses([{"name": "femur", "psv": 0.01, "predicted_dice": None},
                            {"name": "iliacus", "psv": None, "predicted_dice": None}], why)
    assert rows[0]["status"] == {"psv": "ok", "predicted_dice": "unavailable"}
    assert rows[0]["reasons"]["predicted_dice"] == why
    assert rows[1]["reasons"]["psv"] == "the model labelled no voxel of it in this scan"
    assert report_calibration({}, None)[1].startswith("this model was never evaluated")


# --- through the API ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_models_api_shows_the_warning_and_every_status(settings, tmp_path):
    from tests.backend.factories import use_tmp_storage

    use_tmp_storage(settings, tmp_path)
    project = ProjectFactory(label_set=LabelSetFactory(labels__n=4), stop_target_dice=0.5)
    lead = MembershipFactory(project=project).user
    rows = [row(z, {v: 0.3 + 20 * 0.002 * v * k for v in range(1, 5)}, {v: 0.002 * v * k for v in range(1, 5)})
            for z, k in ((1, 1), (2, 2), (3, 3))]
    labels = [(v, f"structure {v}", "muscle") for v in range(1, 5)]
    result = accuracy_metrics(rows, labels, target=0.5, nothing_why=NOTHING_TO_EVALUATE)
    steps = [AcquisitionStep.objects.create(project=project, number=n, state=state, strategy="tau", tau=1e-3,
                                            slices_per_step=1, k_uncertain=2, mc_samples=2)
             for n, state in ((1, State.DONE), (2, State.TRAINING))]
    ModelVersion.objects.create(project=project, number=0, checkpoint="x.pt")
    ModelVersion.objects.create(project=project, step=steps[0], number=1, checkpoint="x.pt", metrics=result.metrics,
                                calibration=result.calibration)
    ModelVersion.objects.create(project=project, step=steps[1], number=2, checkpoint="x.pt")
    client = APIClient()
    client.force_authenticate(lead)
    models = {m["number"]: m["metrics"] for m in client.get(f"/api/projects/{project.id}/models/").json()}
    warned = models[1]
    assert warned["uncertainty"]["usable"] is False
    assert "correlate the wrong way" in warned["uncertainty"]["warning"]
    assert all(s["predicted_dice"] is None and s["status"]["predicted_dice"] == "unavailable"
               for s in warned["structures"].values())
    assert warned["status"]["stopping_rule"] == "unavailable"
    assert models[0]["reasons"]["evaluation"].startswith("model 0 is trained on the initial training set")
    assert models[2]["reasons"]["evaluation"] == "step 2 is training; its model is evaluated at the end of the step"


@pytest.mark.django_db
def test_metrics_stored_before_statuses_get_them_on_the_way_out(settings, tmp_path):
    from tests.backend.factories import use_tmp_storage

    use_tmp_storage(settings, tmp_path)
    project = ProjectFactory()
    lead = MembershipFactory(project=project).user
    step = AcquisitionStep.objects.create(project=project, number=1, state=State.DONE, strategy="tau", tau=1e-3,
                                          slices_per_step=1, k_uncertain=2, mc_samples=2)
    old = {"structures": {"1": {"name": "femur", "kind": "bone", "dice": 0.8, "asd": None, "psv": 0.01,
                                "predicted_dice": None}},
           "scans": [], "calibration_note": "no test scan with reference labels", "calibration_mae_held_out": None}
    version = ModelVersion.objects.create(project=project, step=step, number=1, checkpoint="x.pt", metrics=old)
    client = APIClient()
    client.force_authenticate(lead)
    metrics = client.get(f"/api/projects/{project.id}/models/{version.id}/").json()["metrics"]
    femur = metrics["structures"]["1"]
    assert femur["status"] == {"dice": "ok", "asd": "unavailable", "psv": "ok", "predicted_dice": "unavailable"}
    assert femur["reasons"]["asd"].startswith("not recorded")
    assert metrics["reasons"]["calibration"] == "no test scan with reference labels"
