"""Per-structure results of one segmented volume (method.md §1 step 7).

One row per structure of the label set: voxel count, volume in mL, mean HU,
PSV (Eq. 5) and, given a PDC calibration, the predicted Dice (Eq. 6). All
figures come from three ``np.bincount`` passes, whatever the number of labels.
"""

from __future__ import annotations

import math

import numpy as np

from mltasks.calibration import PDCCalibration
from mltasks.errors import InvalidArray
from mltasks.geometry import Geometry
from mltasks.labels import LabelSet
from mltasks.uncertainty import structure_wise_variance


def structure_report(
    labels: np.ndarray,
    hu: np.ndarray,
    pixel_uncertainty: np.ndarray,
    geometry: Geometry,
    label_set: LabelSet,
    *,
    calibration: PDCCalibration | None = None,
) -> list[dict]:
    """Per-structure figures, JSON-ready.

    Args:
        labels: (Z, Y, X) integer labels in [0, label_set.n_classes).
        hu: (Z, Y, X) CT in Hounsfield units on the same grid.
        pixel_uncertainty: (Z, Y, X) u = sum_c Var(c) (``mc_statistics``).
        geometry: the grid's geometry; ``geometry.spacing`` (mm) gives volumes.
        label_set: the structures to report, in its order (background excluded).
        calibration: PDC line(s); when given each row gets "predicted_dice".
    Returns:
        One dict per label of ``label_set``: ``name``, ``value``, ``voxels`` (int),
        ``volume_ml``, ``mean_hu``, ``psv`` and, with a calibration,
        ``predicted_dice``. For a structure with no voxel, ``mean_hu``, ``psv``
        and ``predicted_dice`` are None (JSON has no NaN).
    """
    labels = np.asarray(labels)
    hu = np.asarray(hu)
    u = np.asarray(pixel_uncertainty)
    if not labels.shape == hu.shape == u.shape == tuple(geometry.shape):
        msg = f"labels {labels.shape}, hu {hu.shape}, uncertainty {u.shape} and geometry {tuple(geometry.shape)} must have one shape"
        raise InvalidArray(msg)
    n_classes = label_set.n_classes
    psv = structure_wise_variance(labels, u, n_classes)
    flat = labels.reshape(-1)
    counts = np.bincount(flat, minlength=n_classes)
    hu_sums = np.bincount(
        flat, weights=hu.reshape(-1).astype(np.float64, copy=False), minlength=n_classes
    )
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    predicted = None if calibration is None else calibration.predict(psv)

    rows = []
    for lab in label_set.labels:
        n = int(counts[lab.value])
        row = {
            "name": lab.name,
            "value": lab.value,
            "voxels": n,
            "volume_ml": n * voxel_ml,
            "mean_hu": float(hu_sums[lab.value] / n) if n else None,
            "psv": _finite_or_none(psv[lab.value]),
        }
        if predicted is not None:
            row["predicted_dice"] = _finite_or_none(predicted[lab.value])
        rows.append(row)
    return rows


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
