"""Predicted Dice from structure-wise uncertainty, PDC (method.md §3, Eq. 6).

predicted Dice = alpha * PSV + beta, with alpha and beta fitted by least squares
on (PSV, true Dice) pairs. The pairs come from K-fold cross-validation on the
labelled volumes (``kfold_calibrate``; paper: K = 4), so every PSV is measured
on a volume the network did not train on.

**Choice** (method.md §3): one pooled fit over all structures by default
(``pooled=True``), because with a handful of labelled volumes a per-structure
fit has only K-fold-many points per structure. ``pooled=False`` fits each
structure on its own and falls back to the pooled line for structures with
fewer than ``min_pairs`` pairs or no spread in PSV.

Array convention: PSV and Dice tables are (n_volumes, n_classes) with column c
holding class value c (as ``structure_wise_variance`` returns one row); column 0
(background) is left out of the fit. NaN marks a structure absent from a volume;
such pairs are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from mltasks.errors import CalibrationError, InvalidArray
from mltasks.progress import ProgressCallback, report

TrainAndPredict = Callable[[list, list], Sequence[tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class PDCCalibration:
    """Fitted Eq. 6 line(s). Save it with the model through ``to_dict`` / ``from_dict``.

    Attributes:
        alpha, beta: pooled slope and intercept (always fitted; the fallback).
        pooled: True when one line serves every structure.
        per_structure: {class value: (alpha, beta)} of structures with their own fit
            (empty when ``pooled``).
        n_pairs: number of (PSV, Dice) pairs used by the pooled fit.
        correlation: Pearson r between PSV and Dice over those pairs (paper: -0.784).
        mae: in-sample mean absolute error of the predicted Dice over those pairs.
    """

    alpha: float
    beta: float
    pooled: bool = True
    per_structure: dict[int, tuple[float, float]] = field(default_factory=dict)
    n_pairs: int = 0
    correlation: float = math.nan
    mae: float = math.nan

    def coefficients(self, structure: int | None = None) -> tuple[float, float]:
        """(alpha, beta) used for ``structure`` (the pooled pair when it has no fit of its own)."""
        if structure is not None and structure in self.per_structure:
            return self.per_structure[structure]
        return self.alpha, self.beta

    def predict(
        self, psv: np.ndarray | float, *, structures: np.ndarray | None = None
    ) -> np.ndarray:
        """Predicted Dice alpha * PSV + beta clipped to [0, 1]; NaN PSV gives NaN.

        Args:
            psv: PSV values of any shape, e.g. (n_classes,) from ``structure_wise_variance``.
            structures: class value of each entry (broadcast against ``psv``). Only
                matters for per-structure fits; default: the last axis of ``psv``
                indexes class values 0, 1, ... (a scalar ``psv`` uses the pooled line).
        Returns:
            float64 array of ``psv``'s shape.
        """
        psv = np.asarray(psv, dtype=np.float64)
        if not self.per_structure:
            return np.clip(self.alpha * psv + self.beta, 0.0, 1.0)
        if structures is None:
            structures = np.arange(psv.shape[-1]) if psv.ndim else np.asarray(-1)
        structures = np.broadcast_to(np.asarray(structures), psv.shape)
        alpha = np.full(psv.shape, self.alpha)
        beta = np.full(psv.shape, self.beta)
        for value, (a, b) in self.per_structure.items():
            hit = structures == value
            alpha[hit], beta[hit] = a, b
        return np.clip(alpha * psv + beta, 0.0, 1.0)

    def to_dict(self) -> dict:
        """JSON-serialisable form (NaN statistics become None)."""
        return {
            "alpha": self.alpha,
            "beta": self.beta,
            "pooled": self.pooled,
            "per_structure": {str(k): list(v) for k, v in self.per_structure.items()},
            "n_pairs": self.n_pairs,
            "correlation": None if math.isnan(self.correlation) else self.correlation,
            "mae": None if math.isnan(self.mae) else self.mae,
        }

    @classmethod
    def from_dict(cls, data: dict) -> PDCCalibration:
        def num(v: float | None) -> float:
            return math.nan if v is None else float(v)

        return cls(
            alpha=float(data["alpha"]),
            beta=float(data["beta"]),
            pooled=bool(data.get("pooled", True)),
            per_structure={
                int(k): (float(v[0]), float(v[1])) for k, v in data.get("per_structure", {}).items()
            },
            n_pairs=int(data.get("n_pairs", 0)),
            correlation=num(data.get("correlation")),
            mae=num(data.get("mae")),
        )


def fit_pdc(
    psv: np.ndarray,
    dice: np.ndarray,
    *,
    pooled: bool = True,
    skip_background: bool = True,
    min_pairs: int = 3,
) -> PDCCalibration:
    """Least-squares fit of Dice = alpha * PSV + beta (Eq. 6).

    Args:
        psv: (n_volumes, n_classes) table, column c = class value c (see module
            doc), or (n_pairs,) flat pairs without structure identity (pooled only).
        dice: same shape as ``psv``, the true Dice of each structure.
        pooled: one line for all structures (default) or one per structure.
        skip_background: leave column 0 out of a 2D table.
        min_pairs: a per-structure fit needs at least this many pairs, else the
            structure uses the pooled line.
    Returns:
        PDCCalibration.
    """
    psv = np.asarray(psv, dtype=np.float64)
    dice = np.asarray(dice, dtype=np.float64)
    if psv.shape != dice.shape or psv.ndim not in (1, 2):
        msg = f"psv and dice must be equal-shaped (n_pairs,) or (n_volumes, n_classes) arrays; got {psv.shape} and {dice.shape}"
        raise InvalidArray(msg)
    if psv.ndim == 1:
        if not pooled:
            msg = "a per-structure fit needs (n_volumes, n_classes) tables so structures can be told apart"
            raise InvalidArray(msg)
        # One column of pairs whose structure is unknown (-1 never has its own line).
        psv, dice, values = psv[:, None], dice[:, None], np.array([-1])
    else:
        first = 1 if skip_background else 0
        psv, dice, values = psv[:, first:], dice[:, first:], np.arange(first, psv.shape[1])
    ok = np.isfinite(psv) & np.isfinite(dice)
    x, y = psv[ok], dice[ok]
    alpha, beta = _least_squares(x, y, what="the pooled fit")
    per_structure: dict[int, tuple[float, float]] = {}
    if not pooled:
        for col, value in enumerate(values.tolist()):
            xs, ys = psv[ok[:, col], col], dice[ok[:, col], col]
            if xs.size >= max(min_pairs, 2) and np.ptp(xs) > 0:
                per_structure[value] = _least_squares(xs, ys, what=f"structure {value}")
    fitted = PDCCalibration(alpha, beta, pooled, per_structure, n_pairs=int(x.size))
    predicted = fitted.predict(x, structures=np.broadcast_to(values, psv.shape)[ok])
    r = float(np.corrcoef(x, y)[0, 1]) if np.ptp(y) > 0 else math.nan
    return replace(fitted, correlation=r, mae=float(np.mean(np.abs(predicted - y))))


def kfold_calibrate(
    volume_ids: Sequence[Hashable],
    k: int,
    train_and_predict: TrainAndPredict,
    *,
    seed: int = 0,
    pooled: bool = True,
    on_progress: ProgressCallback | None = None,
) -> PDCCalibration:
    """Collect (PSV, Dice) pairs by K-fold cross-validation and fit Eq. 6.

    The volumes are shuffled with ``seed`` and split into ``k`` folds of nearly
    equal size. For each fold, ``train_and_predict(train_ids, held_out_ids)``
    trains a network on ``train_ids`` and returns, for every id of
    ``held_out_ids`` in that order, a pair ``(psv (n_classes,), dice (n_classes,))``
    measured on that held-out volume (NaN for absent structures).

    Args:
        volume_ids: ids of the labelled volumes (any hashable; passed through as given).
        k: number of folds, 2 <= k <= len(volume_ids) (paper: 4).
        train_and_predict: the caller's training + evaluation function.
        seed: seed of the shuffle.
        pooled: passed to ``fit_pdc``.
        on_progress: called with phase "calibrate", done = folds finished, total = k.
    Returns:
        PDCCalibration fitted on all held-out pairs.
    """
    ids = list(volume_ids)
    if not 2 <= k <= len(ids):
        msg = f"K-fold calibration needs 2 <= k <= number of volumes; got k={k} with {len(ids)} volumes"
        raise CalibrationError(msg)
    order = np.random.default_rng(seed).permutation(len(ids))
    folds = np.array_split(order, k)
    psv_rows: list[np.ndarray] = []
    dice_rows: list[np.ndarray] = []
    report(on_progress, "calibrate", 0, k)
    for i, fold in enumerate(folds):
        held = set(fold.tolist())
        held_out = [ids[j] for j in fold]
        train = [ids[j] for j in range(len(ids)) if j not in held]
        results = list(train_and_predict(train, held_out))
        if len(results) != len(held_out):
            msg = f"train_and_predict returned {len(results)} results for {len(held_out)} held-out volumes; return one (psv, dice) pair per held-out volume"
            raise CalibrationError(msg)
        for psv, dsc in results:
            psv_rows.append(np.asarray(psv, dtype=np.float64))
            dice_rows.append(np.asarray(dsc, dtype=np.float64))
        report(on_progress, "calibrate", i + 1, k)
    if len({row.shape for row in psv_rows + dice_rows}) != 1:
        raise CalibrationError(
            "train_and_predict returned PSV / Dice vectors of different lengths; use n_classes for all"
        )
    return fit_pdc(np.stack(psv_rows), np.stack(dice_rows), pooled=pooled)


def held_out_mae(psv: np.ndarray, dice: np.ndarray, *, pooled: bool = True) -> float:
    """Mean |PDC - Dice| when each volume is predicted by the line fitted on the others.

    The honest error of Eq. 6 for a fixed network: the in-sample ``mae`` of
    ``fit_pdc`` judges the line on the pairs it was fitted to.

    Args:
        psv, dice: (n_volumes, n_classes) tables as for ``fit_pdc`` (background skipped).
        pooled: passed to ``fit_pdc``.
    Returns:
        The mean over every finite held-out pair; NaN with fewer than two volumes or
        when no leave-one-out fit is possible.
    """
    psv = np.asarray(psv, dtype=np.float64)
    dice = np.asarray(dice, dtype=np.float64)
    if psv.ndim != 2 or psv.shape != dice.shape:
        msg = f"need equal (n_volumes, n_classes) tables; got {psv.shape} and {dice.shape}"
        raise InvalidArray(msg)
    errors: list[np.ndarray] = []
    for v in range(psv.shape[0]):
        others = np.arange(psv.shape[0]) != v
        try:
            line = fit_pdc(psv[others], dice[others], pooled=pooled)
        except CalibrationError:
            continue
        ok = np.isfinite(psv[v, 1:]) & np.isfinite(dice[v, 1:])
        structures = np.arange(1, psv.shape[1])[ok]
        errors.append(np.abs(line.predict(psv[v, 1:][ok], structures=structures) - dice[v, 1:][ok]))
    pairs = np.concatenate(errors) if errors else np.empty(0)
    return float(pairs.mean()) if pairs.size else math.nan


def _valid_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def _least_squares(x: np.ndarray, y: np.ndarray, *, what: str) -> tuple[float, float]:
    """(alpha, beta) minimising sum (alpha x + beta - y)^2 over the finite pairs."""
    x, y = _valid_pairs(x, y)
    if x.size < 2 or np.ptp(x) == 0:
        msg = f"{what} needs at least two (PSV, Dice) pairs with different PSV; got {x.size}. Label more volumes or use a pooled fit"
        raise CalibrationError(msg)
    xc = x - x.mean()
    alpha = float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))
    return alpha, float(y.mean() - alpha * x.mean())
