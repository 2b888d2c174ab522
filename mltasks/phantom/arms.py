"""Both arms beside the body, as a supine patient's arms lie in a wide-field hip CT.

An arm is an elliptic cross-section keyframed along z: the upper arm (humerus)
above the elbow, the forearm (radius and ulna) down to the wrist, the hand (flat,
palm to the thigh, metacarpals) down to the fingertips. Skin, fat, muscle and bone
take their own tissue classes (``T.ARM_*``) with the patient's CT numbers, so they
look like tissue but lie outside the body mask and carry no label.

Each arm rests above the scan table and beside the body with a gap of air, checked
voxel by voxel: the arm grown by the gap meets no body, table or phantom voxel on
its own slice or the two next to it. So the arms are connected components of their
own, and the in-plane blur of the scanner model never carries arm intensities into
the body (the gap is wider than the blur kernel): the body's HU and labels are those
of a phantom without arms. Random choices come from their own stream
(``PCG64([seed, 23])``), so a patient's other parameters do not change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mltasks.phantom import shapes
from mltasks.phantom.params import PatientParams
from mltasks.phantom.tissue import T


@dataclass(frozen=True)
class ArmSide:
    """One arm. Heights are mm above the femoral head centre; lengths in mm."""

    elbow_h: float
    wrist_h: float
    tip_h: float
    size: float  # scale of the cross-section
    fat_mm: float  # subcutaneous fat of the arm
    gap_mm: float  # air between arm and body
    lift_mm: float  # air between arm and table


def sample_arms(p: PatientParams) -> tuple[ArmSide, ArmSide]:
    """(right, left) arm of a patient; a pure function of its seed and size."""
    rng = np.random.Generator(np.random.PCG64([p.seed, 23]))
    out = []
    for _ in range(2):
        elbow = p.scale * 170.0 + float(rng.normal(0.0, 10.0))
        wrist = elbow - p.scale * 255.0 + float(rng.normal(0.0, 8.0))
        out.append(ArmSide(
            elbow_h=elbow, wrist_h=wrist, tip_h=wrist - p.scale * 185.0,
            size=p.scale * float(np.exp(rng.normal(0.0, 0.06))),
            fat_mm=float(np.clip(0.45 * p.fat_mm * rng.uniform(0.8, 1.2), 3.0, 16.0)),
            gap_mm=float(rng.uniform(4.0, 14.0)), lift_mm=float(rng.uniform(2.0, 8.0)),
        ))
    return out[0], out[1]


def section(arm: ArmSide, h: float) -> tuple[float, float, list[tuple[float, float, float]]] | None:
    """(x semi-axis, y semi-axis, bones [(dy, radius, cortex)]) in mm at height ``h``; None below the fingertips."""
    s = arm.size
    if h >= arm.elbow_h:  # upper arm and humerus
        return 42.0 * s, 45.0 * s, [(0.0, 11.0 * s, 3.0)]
    if h >= arm.wrist_h:  # forearm: radius in front, ulna behind
        t = (h - arm.wrist_h) / (arm.elbow_h - arm.wrist_h)
        ax, ay = (24.0 + 14.0 * t) * s, (27.0 + 15.0 * t) * s
        return ax, ay, [(-0.4 * ay, 7.0 * s, 2.5), (0.4 * ay, 6.0 * s, 2.5)]
    if h > arm.tip_h:  # hand, palm to the thigh: thin across, long front to back
        t = (h - arm.tip_h) / (arm.wrist_h - arm.tip_h)
        ax, ay = (8.0 + 8.0 * t) * s, (30.0 + 12.0 * math.sin(math.pi * t)) * s
        bones = [(f * ay * 0.75, 3.5 * s, 1.2) for f in (-0.6, -0.2, 0.2, 0.6)] if 0.1 < t < 0.9 else []
        return ax, ay, bones
    return None


def _paint_mask(arm: ArmSide, h: float, xc: float, yc: float, xs: np.ndarray, ys: np.ndarray,
                rows: slice, cols: slice) -> np.ndarray | None:
    """(rows, cols) uint8 tissue of the arm centred (xc, yc) mm; 0 outside it."""
    sec = section(arm, h)
    if sec is None:
        return None
    ax, ay, bones = sec
    X, Y = np.meshgrid(xs[cols], ys[rows])
    d = shapes.ellipse(X, Y, xc, yc, ax, ay, 0.0)
    out = np.zeros(X.shape, np.uint8)
    out[d < 0] = T.ARM_MUSCLE
    out[(d < 0) & (d > -1.5 - arm.fat_mm)] = T.ARM_FAT
    out[(d < 0) & (d > -1.5)] = T.ARM_SKIN
    for dy, r, cortex in bones:
        rr = np.hypot(X - xc, Y - (yc + dy))
        out[rr < r] = T.ARM_CORTEX
        out[rr < r - cortex] = T.ARM_MARROW
    return out


def add_arms(tissue: np.ndarray, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, p: PatientParams,
             arms: tuple[ArmSide, ArmSide]) -> None:
    """Paint both arms into ``tissue`` (z, y, x) in place, on air voxels only.

    Args:
        xs, ys, zs: voxel centre coordinates (mm) along x, y, z (increasing).
    """
    px = float(min(xs[1] - xs[0], ys[1] - ys[0])) if min(xs.size, ys.size) > 1 else 1.0
    blur = int(3.0 * max(p.psf_mm / px, 0.35) + 0.5)  # kernel radius of intensity.scanner's blur
    body = (tissue != T.AIR) & (tissue < T.TABLE_SHELL)
    support = (tissue >= T.TABLE_SHELL) & (tissue < T.ARM_SKIN)  # table, calibration block and rods
    for k, z in enumerate(zs):
        near = (body[max(k - 1, 0):k + 2].any(axis=0), support[max(k - 1, 0):k + 2].any(axis=0))
        top = _table_top(support[k], ys)
        for sign, arm in zip((-1, 1), arms, strict=True):
            clear = (max(math.ceil(arm.gap_mm / px), blur + 1, 2), max(math.ceil(arm.lift_mm / px), 1))
            placed = _place(arm, float(z) - p.head_level, sign, near, top, xs, ys, clear)
            if placed is not None:
                rows, cols, paint = placed
                view = tissue[k, rows, cols]
                free = (paint > 0) & (view == T.AIR)
                view[free] = paint[free]


def _table_top(support: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(nx,) y (mm) of the first support voxel in every column, +inf where there is none."""
    first = np.argmax(support, axis=0)
    return np.where(support.any(axis=0), ys[first], np.inf)


def _place(arm: ArmSide, h: float, sign: int, near: tuple[np.ndarray, np.ndarray], top: np.ndarray,
           xs: np.ndarray, ys: np.ndarray, clear: tuple[int, int]) -> tuple[slice, slice, np.ndarray] | None:
    """Where the arm goes on one slice: on the table's level, beside the body, with
    ``clear`` = (voxels of air to the body, to the table) around it; None when it has
    no section here or lies outside the field of view."""
    sec = section(arm, h)
    body, support = near
    if sec is None or not body.any():
        return None
    ax, ay = sec[0], sec[1]
    px = float(xs[1] - xs[0])
    # Beside the widest point at the table's level, then in to where the body is at that
    # height, then out of the way of body and table voxel by voxel.
    cols = np.flatnonzero(body.any(axis=0))
    xc = (xs[cols[-1]] if sign > 0 else xs[cols[0]]) + sign * (ax + clear[0] * px)
    yc = _table_level(top, xs, xc, ax, default=float(ys[-1])) - arm.lift_mm - ay
    band = body[_span(ys, yc, ay)]
    if band.any():
        cols = np.flatnonzero(band.any(axis=0))
        xc = (xs[cols[-1]] if sign > 0 else xs[cols[0]]) + sign * (ax + clear[0] * px)
    for _ in range(400):
        reach = max(clear) + 1
        rows, cols_ = _span(ys, yc, ay + reach * px), _span(xs, xc, ax + reach * px)
        if rows.stop <= rows.start or cols_.stop <= cols_.start:
            return None
        paint = _paint_mask(arm, h, xc, yc, xs, ys, rows, cols_)
        arm_mask = paint > 0
        if not arm_mask.any():
            return None
        if _touches(arm_mask, body[rows, cols_], clear[0]):
            xc += sign * px
        elif _touches(arm_mask, support[rows, cols_], clear[1]):
            yc -= px
        else:
            return rows, cols_, paint
    return None


def _table_level(top: np.ndarray, xs: np.ndarray, xc: float, ax: float, *, default: float) -> float:
    """y (mm) of the table's top under an arm at ``xc``; beyond the table, at its nearest
    edge (the arm rests on a pad at the table's height); ``default`` without a table."""
    known = np.flatnonzero(np.isfinite(top))
    if known.size == 0:
        return default
    under = known[np.abs(xs[known] - xc) <= ax]
    if under.size:
        return float(top[under].min())
    return float(top[known[np.argmin(np.abs(xs[known] - xc))]])


def _touches(mask: np.ndarray, other: np.ndarray, voxels: int) -> bool:
    """True when ``other`` lies within ``voxels`` (chessboard distance) of ``mask``."""
    if not other.any():
        return False
    return bool((ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=voxels) & other).any())


def _span(coords: np.ndarray, centre: float, half: float) -> slice:
    lo = int(np.searchsorted(coords, centre - half))
    hi = int(np.searchsorted(coords, centre + half, side="right"))
    return slice(lo, hi)
