"""Atrophy and fat: per-structure volume, HU statistics, intramuscular fat and left/right ratios.

Figures per structure of a label map on its CT: volume (mL), mean and median HU, and the
intramuscular fat fraction, the share of the structure's voxels whose HU lies in the fat
range (inclusive; -190 to -30 HU by default, the range of Goodpaster et al. and most CT
muscle-quality studies). For label sets with sided twins (``<base>_left`` and
``<base>_right``) each twin also gets the left/right volume ratio.

Everything comes from one ``np.bincount`` of (label, HU) pairs: a per-label HU
histogram, from which the median, the fat count and the counts are exact for
integer CT numbers (stored scans are int16); the mean uses the HU as given.
"""

from __future__ import annotations

import base64
import csv
import io
import math

import numpy as np

from mltasks.errors import InvalidArray
from mltasks.geometry import Geometry
from mltasks.labels import LabelSet

FAT_HU = (-190.0, -30.0)
COLUMNS = ["name", "value", "kind", "voxels", "volume_ml", "mean_hu", "median_hu", "fat_fraction",
           "fat_hu_min", "fat_hu_max", "twin", "left_right_volume_ratio"]
_SIDES = ("_left", "_right")


def check_fat_range(fat_hu: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(v) for v in fat_hu)
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ValueError(f"fat range {low:g} to {high:g} HU: the lower bound must be below the upper one")
    return low, high


def muscle_report(
    labels: np.ndarray,
    hu: np.ndarray,
    geometry: Geometry,
    label_set: LabelSet,
    *,
    fat_hu: tuple[float, float] = FAT_HU,
) -> list[dict]:
    """Per-structure atrophy and fat figures, JSON-ready.

    Args:
        labels: (Z, Y, X) integer labels on ``geometry`` (values outside the set are ignored).
        hu: (Z, Y, X) CT numbers on the same grid.
        geometry: gives the voxel volume (``spacing``, mm).
        label_set: the structures, in its order.
        fat_hu: inclusive (low, high) HU of fat.
    Returns:
        One dict per label, keys ``COLUMNS``. For a structure without voxels the HU figures
        and the fat fraction are None; ``left_right_volume_ratio`` is left volume / right
        volume on both twins (None without twins or with an empty right side).
    """
    low, high = check_fat_range(fat_hu)
    labels, hu = np.asarray(labels), np.asarray(hu)
    if not labels.shape == hu.shape == tuple(geometry.shape):
        raise InvalidArray(f"labels {labels.shape}, hu {hu.shape} and geometry {tuple(geometry.shape)} "
                           "must have one shape")
    n_classes = max([lab.value for lab in label_set.labels], default=0) + 1
    histograms, hu_min = _histograms(labels, hu, n_classes)
    hu_values = np.arange(histograms.shape[1], dtype=np.float64) + hu_min
    in_fat = (hu_values >= low) & (hu_values <= high)
    sums = _hu_sums(labels, hu, n_classes)
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    rows = []
    for lab in label_set.labels:
        histogram = histograms[lab.value]
        n = int(histogram.sum())
        rows.append({
            "name": lab.name, "value": lab.value, "kind": lab.kind, "voxels": n, "volume_ml": n * voxel_ml,
            "mean_hu": float(sums[lab.value] / n) if n else None,
            "median_hu": _median(histogram, hu_values) if n else None,
            "fat_fraction": float(histogram[in_fat].sum() / n) if n else None,
            "fat_hu_min": low, "fat_hu_max": high, "twin": None, "left_right_volume_ratio": None,
        })
    _add_left_right(rows)
    return rows


def _histograms(labels: np.ndarray, hu: np.ndarray, n_classes: int) -> tuple[np.ndarray, int]:
    """(n_classes, HU range) voxel counts of every (label, rounded HU); labels >= n_classes dropped."""
    keep = labels < n_classes
    flat_labels = labels[keep].astype(np.int64, copy=False).ravel()
    flat_hu = np.rint(hu[keep]).astype(np.int64).ravel()
    if flat_hu.size == 0:
        return np.zeros((n_classes, 1), np.int64), 0
    hu_min, span = int(flat_hu.min()), int(flat_hu.max() - flat_hu.min()) + 1
    counts = np.bincount(flat_labels * span + (flat_hu - hu_min), minlength=n_classes * span)
    return counts.reshape(n_classes, span), hu_min


def _hu_sums(labels: np.ndarray, hu: np.ndarray, n_classes: int) -> np.ndarray:
    keep = labels < n_classes
    return np.bincount(labels[keep].astype(np.int64, copy=False).ravel(),
                       weights=hu[keep].astype(np.float64).ravel(), minlength=n_classes)


def _median(histogram: np.ndarray, values: np.ndarray) -> float:
    """The median of the voxels a histogram counts (the mean of the two middle ones for an even count)."""
    cumulative = np.cumsum(histogram)
    n = int(cumulative[-1])
    lower = values[np.searchsorted(cumulative, (n - 1) // 2, side="right")]
    upper = values[np.searchsorted(cumulative, n // 2, side="right")]
    return float((lower + upper) / 2.0)


def _add_left_right(rows: list[dict]) -> None:
    by_name = {row["name"]: row for row in rows}
    for row in rows:
        for side, other in (("_left", "_right"), ("_right", "_left")):
            if row["name"].endswith(side) and (twin := by_name.get(row["name"][: -len(side)] + other)):
                left, right = (row, twin) if side == "_left" else (twin, row)
                row["twin"] = twin["name"]
                row["left_right_volume_ratio"] = (left["volume_ml"] / right["volume_ml"]
                                                  if right["voxels"] else None)


def report_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    return out.getvalue()


def report_figure_png(series: list[tuple[str, list[dict]]], *, kinds: tuple[str, ...] = ("muscle",)) -> bytes:
    """Bar charts of volume (mL) and fat fraction (%) per structure, one bar per scan, side by side.

    Args:
        series: (caption, rows of ``muscle_report``) per scan; the first scan's structures set the order.
        kinds: the structure kinds charted (bones have no intramuscular fat).
    Returns:
        PNG bytes (for a data: URL, which a strict Content-Security-Policy allows for images).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    names = [row["name"] for row in series[0][1] if row["kind"] in kinds]
    figure = Figure(figsize=(8.0, 2.0 + 0.22 * len(names)), dpi=100)
    axes = figure.subplots(1, 2, sharey=True)
    width = 0.8 / len(series)
    positions = np.arange(len(names), dtype=np.float64)
    for k, (caption, rows) in enumerate(series):
        by_name = {row["name"]: row for row in rows}
        volume = [by_name.get(n, {}).get("volume_ml") or 0.0 for n in names]
        fat = [100.0 * (by_name.get(n, {}).get("fat_fraction") or 0.0) for n in names]
        offset = positions - 0.4 + width * (k + 0.5)
        axes[0].barh(offset, volume, height=width, label=caption)
        axes[1].barh(offset, fat, height=width, label=caption)
    axes[0].set_yticks(positions, names, fontsize=7)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("volume (mL)")
    axes[1].set_xlabel("intramuscular fat (% of voxels)")
    if len(series) > 1:
        axes[1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
