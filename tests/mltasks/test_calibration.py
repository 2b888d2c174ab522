"""PDC (Eq. 6): least-squares fit, prediction, K-fold collection; and the per-structure report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mltasks.calibration import PDCCalibration, fit_pdc, kfold_calibrate
from mltasks.errors import CalibrationError, InvalidArray
from mltasks.geometry import Geometry
from mltasks.labels import Label, LabelSet
from mltasks.report import structure_report


def test_least_squares_on_three_hand_worked_points():
    # (0, 1), (1, 3), (2, 2): mean x 1, mean y 2; sum dx dy = 1, sum dx^2 = 2
    # alpha = 0.5, beta = 2 - 0.5 * 1 = 1.5
    cal = fit_pdc(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 2.0]))
    assert cal.alpha == pytest.approx(0.5)
    assert cal.beta == pytest.approx(1.5)
    assert cal.n_pairs == 3


def test_it_recovers_alpha_and_beta_from_synthetic_linear_data():
    rng = np.random.default_rng(0)
    psv = rng.uniform(0.001, 0.02, size=200)
    exact = fit_pdc(psv, -12.0 * psv + 0.97)
    assert exact.alpha == pytest.approx(-12.0, abs=1e-9)
    assert exact.beta == pytest.approx(0.97, abs=1e-12)
    assert exact.correlation == pytest.approx(-1.0)
    assert exact.mae == pytest.approx(0.0, abs=1e-12)
    noisy = fit_pdc(psv, -12.0 * psv + 0.97 + rng.normal(scale=0.002, size=psv.size))
    assert noisy.alpha == pytest.approx(-12.0, abs=0.5)
    assert noisy.beta == pytest.approx(0.97, abs=0.005)


def test_a_table_ignores_background_and_absent_structures():
    # (n_volumes=4, n_classes=3); column 0 is background (garbage), NaN = absent.
    psv = np.array([[9.0, 0.01, 0.02], [9.0, 0.03, np.nan], [9.0, 0.05, 0.04], [9.0, 0.00, 0.06]])
    dice = 0.9 - 2.0 * psv
    dice[:, 0] = -5.0
    cal = fit_pdc(psv, dice)
    assert cal.alpha == pytest.approx(-2.0)
    assert cal.beta == pytest.approx(0.9)
    assert cal.n_pairs == 7


def test_per_structure_fits_each_line_and_falls_back_to_the_pooled_one():
    psv = np.array([[0, 0.01, 0.01, 0.5], [0, 0.02, 0.02, np.nan], [0, 0.03, 0.03, np.nan]])
    dice = np.stack(
        [np.zeros(3), 0.9 - 1.0 * psv[:, 1], 0.8 - 3.0 * psv[:, 2], [0.4, np.nan, np.nan]], axis=1
    )
    cal = fit_pdc(psv, dice, pooled=False)
    assert not cal.pooled
    assert cal.coefficients(1) == pytest.approx((-1.0, 0.9))
    assert cal.coefficients(2) == pytest.approx((-3.0, 0.8))
    assert 3 not in cal.per_structure  # one pair only: pooled line
    assert cal.coefficients(3) == (cal.alpha, cal.beta)
    predicted = cal.predict(np.array([np.nan, 0.1, 0.1, 0.1]))  # indexed by class value
    assert math.isnan(predicted[0])
    assert predicted[1:3] == pytest.approx([0.8, 0.5])
    assert predicted[3] == pytest.approx(np.clip(cal.alpha * 0.1 + cal.beta, 0, 1))


def test_predict_clips_to_the_unit_interval_and_keeps_nan():
    cal = PDCCalibration(alpha=-10.0, beta=1.2)
    np.testing.assert_allclose(cal.predict(np.array([0.0, 0.05, 0.5])), [1.0, 0.7, 0.0])
    assert math.isnan(float(cal.predict(np.nan)))


def test_it_round_trips_through_json():
    cal = PDCCalibration(
        alpha=-3.5,
        beta=0.9,
        pooled=False,
        per_structure={4: (-1.0, 0.8)},
        n_pairs=12,
        correlation=-0.7,
    )
    again = PDCCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again.alpha == cal.alpha and again.per_structure == cal.per_structure
    assert again.correlation == -0.7 and math.isnan(again.mae)


def test_it_refuses_to_fit_without_two_distinct_psv_values():
    with pytest.raises(CalibrationError, match="at least two"):
        fit_pdc(np.array([0.01, 0.01]), np.array([0.8, 0.9]))
    with pytest.raises(InvalidArray, match="per-structure"):
        fit_pdc(np.array([0.01, 0.02]), np.array([0.8, 0.9]), pooled=False)


class FakeTraining:
    """train_and_predict stand-in: each volume has fixed PSVs, Dice = 0.95 - 4 PSV."""

    def __init__(self, ids: list[str]) -> None:
        rng = np.random.default_rng(5)
        self.psv = {v: np.concatenate([[np.nan], rng.uniform(0.0, 0.05, size=3)]) for v in ids}
        self.calls: list[tuple[list[str], list[str]]] = []

    def __call__(
        self, train: list[str], held_out: list[str]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        self.calls.append((list(train), list(held_out)))
        return [(self.psv[v], 0.95 - 4.0 * self.psv[v]) for v in held_out]


def test_kfold_holds_every_volume_out_once_and_fits_the_pairs():
    ids = [f"ct{i}" for i in range(10)]
    fake = FakeTraining(ids)
    progress = []
    cal = kfold_calibrate(ids, 4, fake, seed=3, on_progress=progress.append)
    assert len(fake.calls) == 4
    held = [v for _, h in fake.calls for v in h]
    assert sorted(held) == sorted(ids)
    for train, held_out in fake.calls:
        assert set(train).isdisjoint(held_out) and set(train) | set(held_out) == set(ids)
        assert len(held_out) in (2, 3)
    assert [(p.phase, p.done, p.total) for p in progress] == [("calibrate", i, 4) for i in range(5)]
    assert cal.alpha == pytest.approx(-4.0) and cal.beta == pytest.approx(0.95)
    assert cal.n_pairs == 30


def test_kfold_folds_depend_only_on_the_seed():
    ids = list(range(12))
    a, b, c = FakeTraining(ids), FakeTraining(ids), FakeTraining(ids)
    kfold_calibrate(ids, 4, a, seed=1)
    kfold_calibrate(ids, 4, b, seed=1)
    kfold_calibrate(ids, 4, c, seed=2)
    assert a.calls == b.calls
    assert a.calls != c.calls


def test_kfold_rejects_bad_k_and_missing_results():
    ids = ["a", "b", "c"]
    with pytest.raises(CalibrationError, match="2 <= k"):
        kfold_calibrate(ids, 4, FakeTraining(ids))
    with pytest.raises(CalibrationError, match="one \\(psv, dice\\) pair"):
        kfold_calibrate(ids, 3, lambda train, held: [])


def test_structure_report_gives_volume_hu_psv_and_predicted_dice():
    label_set = LabelSet(
        labels=(
            Label(1, "femur", "bone", "#fff2a8", "femur", ""),
            Label(2, "iliacus", "muscle", "#f58231", "iliacus", ""),
        )
    )
    geometry = Geometry(shape=(1, 2, 3), spacing=(2.0, 1.0, 0.5))  # 1 mm^3 = 0.001 mL per voxel
    labels = np.array([[[1, 1, 1], [0, 0, 0]]], dtype=np.uint8)  # femur: 3 voxels, iliacus absent
    hu = np.array([[[100.0, 200.0, 600.0], [-1000.0, -1000.0, -1000.0]]])
    u = np.array([[[0.01, 0.02, 0.03], [0.0, 0.0, 0.0]]])
    rows = structure_report(
        labels, hu, u, geometry, label_set, calibration=PDCCalibration(alpha=-10.0, beta=1.0)
    )
    femur, iliacus = rows
    assert femur["name"] == "femur" and femur["value"] == 1 and femur["voxels"] == 3
    assert femur["volume_ml"] == pytest.approx(0.003)
    assert femur["mean_hu"] == pytest.approx(300.0)
    assert femur["psv"] == pytest.approx(0.02)
    assert femur["predicted_dice"] == pytest.approx(0.8)
    assert iliacus == {
        "name": "iliacus",
        "value": 2,
        "voxels": 0,
        "volume_ml": 0.0,
        "mean_hu": None,
        "psv": None,
        "predicted_dice": None,
    }
    json.dumps(rows)  # JSON-ready
    assert "predicted_dice" not in structure_report(labels, hu, u, geometry, label_set)[0]


def test_held_out_mae_predicts_each_volume_with_the_line_of_the_others():
    from mltasks.calibration import held_out_mae

    nan = np.nan
    # Columns: background (ignored), two structures. Volumes 0 and 1 lie on Dice = 1 - 10 PSV;
    # volume 2 sits 0.1 above that line.
    psv = np.array([[9.0, 0.01, 0.02], [9.0, 0.03, 0.04], [9.0, 0.05, nan]])
    dice = np.array([[0.0, 0.90, 0.80], [0.0, 0.70, 0.60], [0.0, 0.60, 0.3]])
    errors = []
    for v in range(3):
        others = [i for i in range(3) if i != v]
        x, y = psv[others, 1:].ravel(), dice[others, 1:].ravel()
        ok = np.isfinite(x)
        a, b = np.polyfit(x[ok], y[ok], 1)
        keep = np.isfinite(psv[v, 1:])
        errors += list(np.abs(np.clip(a * psv[v, 1:][keep] + b, 0, 1) - dice[v, 1:][keep]))
    assert held_out_mae(psv, dice) == pytest.approx(np.mean(errors), abs=1e-12)
    # Volume 2 predicted from the exact line of 0 and 1: error 0.1 on its one structure.
    assert errors[-1] == pytest.approx(0.1, abs=1e-9)


def test_held_out_mae_is_nan_with_one_volume():
    from mltasks.calibration import held_out_mae

    assert np.isnan(held_out_mae(np.array([[0.0, 0.1, 0.2]]), np.array([[0.0, 0.5, 0.4]])))
