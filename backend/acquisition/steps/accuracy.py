"""The accuracy of a model on its evaluation set, every figure with a status.

``accuracy_metrics`` turns the rows measured by ``steps.evaluation`` (one per whole
test scan, or one per held-out slice) into what ``ModelVersion.metrics`` stores: a
table per structure (Dice, ASD, PSV, predicted Dice), the pooled PDC line (Eq. 6)
with its leave-one-row-out error, a check that the uncertainty is a usable signal,
and the stopping rule. A figure that cannot be computed is null with status
``unavailable`` and a reason a lead can act on; nothing is made up (a structure absent
from both reference and prediction has no Dice here, not 1.0).

Only numbers in, numbers out (through ``ml_adapter`` for the fit): the unit tests build
rows by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from backend.acquisition import ml_adapter

OK, UNAVAILABLE = "ok", "unavailable"
# A line through fewer pairs says nothing about the next scan.
MIN_FIT_PAIRS = 5
# The uncertainty is a usable signal only when more uncertain structures score lower
# (the paper measured r = -0.784) and the line predicts the measured Dice within this
# mean absolute error (leave-one-row-out when there are two rows or more).
MAX_CORRELATION = 0.0
MAX_PDC_ERROR = 0.10
UNITS = {"test_scan": ("test scan", "test scans"), "held_out": ("held-out slice", "held-out slices")}


@dataclass
class Row:
    """One unit of the evaluation set: a whole test scan, or one held-out slice."""

    kind: str  # "test_scan" or "held_out"
    scan: int
    name: str
    z: int | None  # the held-out slice; None for a whole scan
    metrics: dict[int, dict[str, float]]  # {value: {"dice", "asd"}} (mltasks.metrics conventions)
    psv: np.ndarray  # (n_classes,), NaN where the model predicted no pixel
    in_reference: np.ndarray  # (n_classes,) bool
    in_prediction: np.ndarray  # (n_classes,) bool

    def dice(self, v: int) -> float | None:
        """None when the structure is in neither reference nor prediction (nothing was measured)."""
        if not (self.in_reference[v] or self.in_prediction[v]) or v not in self.metrics:
            return None
        return float(self.metrics[v]["dice"])

    def asd(self, v: int) -> float | None:
        value = self.metrics.get(v, {}).get("asd")
        ok = value is not None and self.in_reference[v] and self.in_prediction[v] and math.isfinite(value)
        return float(value) if ok else None

    def psv_of(self, v: int) -> float | None:
        return float(self.psv[v]) if np.isfinite(self.psv[v]) else None

    def to_json(self, values: list[int]) -> dict:
        return {"kind": self.kind, "scan": self.scan, "name": self.name, "z": self.z,
                "dice": {str(v): self.dice(v) for v in values}, "asd": {str(v): self.asd(v) for v in values},
                "psv": [self.psv_of(v) for v in range(len(self.psv))]}


@dataclass
class Accuracy:
    metrics: dict
    calibration: dict | None
    stop_reached: bool
    # On held-out slices: {"held_out_dice_per_class", "held_out_slices"} (steps.evaluation).
    held_out: dict | None = None


@dataclass
class _Status:
    """Statuses and reasons of the figures of one object (a structure row, or the whole model)."""

    status: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def set(self, name: str, why: str = "") -> None:
        self.status[name] = UNAVAILABLE if why else OK
        if why:
            self.reasons[name] = why

    def to_json(self) -> dict:
        return {"status": self.status, "reasons": self.reasons}


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def accuracy_metrics(rows: list[Row], labels: list[tuple[int, str, str]], *, target: float | None,
                     nothing_why: str) -> Accuracy:
    """The stored metrics of a model measured on ``rows``.

    Args:
        rows: the evaluation set's rows, all of one kind; empty when there is nothing to evaluate on.
        labels: (value, name, kind) of every structure of the label set.
        target: the project's stop_target_dice (None: no stopping rule).
        nothing_why: the reason every figure is unavailable when ``rows`` is empty.
    """
    values = [v for v, _, _ in labels]
    unit = UNITS[rows[0].kind] if rows else ("slice", "slices")
    calibration, fit_why, mae_held_out, mae_why = _fit(rows, values, nothing_why)
    signal = uncertainty_signal(calibration, mae_held_out, unit[1])
    signal_why = fit_why or ("" if signal["usable"] else signal["warning"])
    empty_why = "" if rows else nothing_why
    structures = {str(v): _structure(rows, v, name, kind, calibration, signal_why, unit, empty_why)
                  for v, name, kind in labels}
    stop = stopping_rule(rows, labels, structures, target, why=nothing_why if not rows else signal_why)
    top = _Status()
    top.set("calibration", fit_why)
    top.set("calibration_mae_held_out", mae_why)
    top.set("uncertainty", fit_why)
    top.set("stopping_rule", stop.pop("why"))
    metrics = {
        "evaluated_on": _evaluated_on(rows),
        "structures": structures,
        "rows": [row.to_json(values) for row in rows],
        "calibration_note": fit_why,
        "calibration_mae_held_out": mae_held_out,
        "uncertainty": signal,
        "stopping_rule": stop,
        **top.to_json(),
    }
    return Accuracy(metrics, calibration, bool(stop["reached"]))


def _evaluated_on(rows: list[Row]) -> dict:
    kind = rows[0].kind if rows else None
    return {"set": {"test_scan": "test_scans", "held_out": "held_out_slices"}.get(kind),
            "rows": len(rows), "scans": len({row.scan for row in rows}),
            "slices": [[row.scan, row.z] for row in rows if row.z is not None]}


def _fit(rows: list[Row], values: list[int], nothing_why: str):
    """(calibration or None, why not, leave-one-row-out MAE or None, why not)."""
    if not rows:
        return None, nothing_why, None, nothing_why
    n_classes = len(rows[0].psv)
    psv = np.array([[np.nan if r.psv_of(v) is None else r.psv_of(v) for v in range(n_classes)] for r in rows])
    dice = np.array([[np.nan if v not in values or r.dice(v) is None else r.dice(v) for v in range(n_classes)]
                     for r in rows])
    pairs = int((np.isfinite(psv[:, 1:]) & np.isfinite(dice[:, 1:])).sum())
    if pairs < MIN_FIT_PAIRS:
        why = (f"only {pairs} (PSV, Dice) pair(s) on the evaluation set, fewer than the {MIN_FIT_PAIRS} a PDC line "
               "needs: the model found too few structures, or too few slices are held out")
        return None, why, None, why
    calibration, why = ml_adapter.calibration_fit(list(psv), list(dice))
    if calibration is None:
        return None, f"the PDC line could not be fitted: {why}", None, f"the PDC line could not be fitted: {why}"
    if len(rows) < 2:
        return calibration, "", None, "one row only: the leave-one-out error needs two rows or more"
    mae = ml_adapter.calibration_held_out_mae(list(psv), list(dice))
    return calibration, "", mae, "" if mae is not None else "no leave-one-out fit was possible"


def uncertainty_signal(calibration: dict | None, mae_held_out: float | None, units: str) -> dict:
    """Whether PSV can stand for accuracy: {"usable", "warning", "correlation", "error", "error_kind"}.

    ``usable`` is None without a calibration (nothing to judge).
    """
    if calibration is None:
        return {"usable": None, "warning": None, "correlation": None, "error": None, "error_kind": None}
    r = calibration.get("correlation")
    error, kind = (mae_held_out, "leave-one-out") if mae_held_out is not None else (calibration.get("mae"), "in-sample")
    problems = []
    if r is None:
        problems.append(f"PSV and Dice do not vary together on the {units} (every Dice is the same)")
    elif r > MAX_CORRELATION:
        problems.append(f"PSV and Dice correlate the wrong way on the {units} (r = {r:+.2f} over "
                        f"{calibration.get('n_pairs')} pairs: more uncertain structures scored higher; the paper "
                        "measured r = -0.78)")
    if error is not None and error > MAX_PDC_ERROR:
        problems.append(f"the predicted Dice is off by {error:.2f} on average from the Dice measured on the {units} "
                        f"({kind}), more than {MAX_PDC_ERROR:.2f}")
    warning = None
    if problems:
        warning = ("The uncertainty is not yet a usable signal: " + "; ".join(problems) + ". No predicted Dice is "
                   "given and the stopping rule is not applied; judge this model by its measured Dice.")
    return {"usable": not problems, "warning": warning, "correlation": r, "error": error, "error_kind": kind}


def _structure(rows, v, name, kind, calibration, signal_why, unit, nothing_why) -> dict:
    status = _Status()
    dices = [row.dice(v) for row in rows]
    asds = [row.asd(v) for row in rows]
    psvs = [row.psv_of(v) for row in rows]
    absent = nothing_why or f"absent from the reference and the prediction on every {unit[0]}"
    measured = any(d is not None for d in dices)
    status.set("dice", "" if measured else absent)
    status.set("asd", "" if any(a is not None for a in asds) else (
        absent if not measured else f"no {unit[0]} has it in both the reference and the prediction"))
    found = any(p is not None for p in psvs)
    status.set("psv", "" if found else (nothing_why or f"the model predicted no pixel of it on the {unit[1]}"))
    predicted = None
    if signal_why:
        status.set("predicted_dice", signal_why)
    elif not found:
        status.set("predicted_dice", f"no PSV: the model predicted no pixel of it on the {unit[1]}")
    else:
        predicted = _mean(float(ml_adapter.predicted_dice(calibration, np.array([p]))[0]) if p is not None else None
                          for p in psvs)
        status.set("predicted_dice")
    # How many rows the Dice is a mean of: on one CT a figure over 2 slices is worth little.
    n_rows = sum(d is not None for d in dices)
    return {"name": name, "kind": kind, "dice": _mean(dices), "asd": _mean(asds), "psv": _mean(psvs),
            "predicted_dice": predicted, "n_rows": n_rows, **status.to_json()}


def stopping_rule(rows: list[Row], labels, structures: dict, target: float | None, *, why: str) -> dict:
    """Every muscle present in the evaluation set's reference has a predicted Dice >= ``target``.

    {"reached", "target", "muscles", "below", "why"}; ``why`` (popped by the caller) is
    non-empty when the rule cannot be applied, and ``reached`` is then False.
    """
    out = {"reached": False, "target": target, "muscles": 0, "below": [], "why": ""}
    if target is None:
        return out | {"why": "the project has no stop target (stop_target_dice)"}
    if why:
        return out | {"why": why}
    judged = [str(v) for v, _, kind in labels if kind == "muscle" and any(row.in_reference[v] for row in rows)]
    if not judged:
        return out | {"why": "no muscle of the label set is in the reference of the evaluation set"}
    below = [structures[v]["name"] for v in judged
             if structures[v]["predicted_dice"] is None or structures[v]["predicted_dice"] < target]
    return out | {"reached": not below, "muscles": len(judged), "below": below}


# --- what the API shows for models measured before statuses, or never ----------------------

FIGURES = ("dice", "asd", "psv", "predicted_dice")
TOP_FIGURES = ("calibration", "calibration_mae_held_out", "uncertainty", "stopping_rule")


def unevaluated(why: str) -> dict:
    """Metrics of a model that has not been (or will not be) evaluated."""
    status = _Status()
    for name in ("evaluation", *TOP_FIGURES):
        status.set(name, why)
    return {"evaluated_on": None, "structures": {}, "rows": [], **status.to_json()}


def with_statuses(metrics: dict) -> dict:
    """Metrics stored before every figure had a status: a null figure becomes unavailable."""
    if "status" in metrics:
        return metrics
    why = "not recorded: this model was evaluated before accuracy figures had statuses"
    structures = {}
    for value, row in (metrics.get("structures") or {}).items():
        status = _Status()
        for name in FIGURES:
            status.set(name, "" if row.get(name) is not None else why)
        structures[value] = {**row, **status.to_json()}
    top = _Status()
    top.set("calibration", "" if metrics.get("calibration_note", "") == "" else metrics["calibration_note"])
    for name in TOP_FIGURES[1:]:
        top.set(name, "" if metrics.get(name) is not None else why)
    return {**metrics, "structures": structures, **top.to_json()}


# --- the per-structure report of a segmentation ------------------------------------------

def report_calibration(metrics: dict, calibration: dict | None) -> tuple[dict | None, str]:
    """The PDC line a segmentation report may use, or (None, why not): never the line of a
    model whose uncertainty was found unusable."""
    if not metrics:
        return None, "this model was never evaluated, so it has no PDC line (each step's own model is)"
    metrics = with_statuses(metrics)
    if calibration is None:
        return None, f"no PDC line: {metrics['reasons'].get('calibration', 'it was not fitted')}"
    signal = metrics.get("uncertainty") or {}
    if signal.get("usable") is False:
        return None, signal["warning"]
    return calibration, ""


def report_statuses(rows: list[dict], why: str) -> list[dict]:
    """Report rows (``mltasks.report``) with the status of their PSV and predicted Dice."""
    out = []
    for row in rows:
        status = _Status()
        found = row.get("psv") is not None
        status.set("psv", "" if found else "the model labelled no voxel of it in this scan")
        status.set("predicted_dice", "" if row.get("predicted_dice") is not None else (
            why or "no PSV: the model labelled no voxel of it in this scan"))
        out.append({**row, **status.to_json()})
    return out
