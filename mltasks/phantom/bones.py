"""Bones of the template patient: femur, hip bone, sacrum and the (unlabelled) L5.

Frames (template mm): ``h`` is the height above the femoral head centre.
Leg and pelvic frames have their origin at the head centre, ``u`` pointing
lateral (away from the midline) and ``w`` anterior. The midline frame has ``d``
(signed distance from the midline) and the same ``w``. Functions return
approximate signed distances in template mm (negative inside).
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

from mltasks.phantom import shapes

HEAD_R = 23.0
JOINT_GAP = 2.5
CUP_AXIS = np.array([0.68, 0.18, -0.71]) / np.linalg.norm([0.68, 0.18, -0.71])
ILIUM_RANGE = (12.0, 106.0)
SACRUM_RANGE = (-10.0, 72.0)
FEMUR_TOP = HEAD_R
PELVIS_BOTTOM = -58.0

# Femoral shaft axis: (h, u, w).
_AXIS = np.array([(-30, 42, -6), (-70, 38, -4), (-120, 31, 0), (-200, 17, 4), (-300, 1, 7)], dtype=float)


def femur_axis(h: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(u, w) of the shaft centre at height(s) ``h`` (extrapolated flat above h = -30)."""
    hh = _AXIS[::-1, 0]
    return np.interp(h, hh, _AXIS[::-1, 1]), np.interp(h, hh, _AXIS[::-1, 2])


def femur(u: np.ndarray, w: np.ndarray, h: float) -> tuple[np.ndarray, float]:
    """Signed distance of the femur and its cortical thickness at this height."""
    parts = [shapes.sphere(u, w, h, (0, 0, 0), HEAD_R)]
    if h < 5:
        parts.append(shapes.capsule(u, w, h, (0, 0, 0), (40, -8, -30), 14.0, 16.5))
    if -55 < h < 10:
        parts.append(shapes.ellipsoid(u, w, h, (52, -12, -24), (14, 18, 28)))
    if h < -20:
        parts.append(shapes.capsule(u, w, h, (42, -6, -30), (38, -4, -70), 19.0, 16.0))
        for (h0, u0, w0), (h1, u1, w1), r0, r1 in zip(_AXIS[1:-1], _AXIS[2:], (16.0, 14.5, 13.5), (14.5, 13.5, 13.0), strict=False):
            if h1 - 20 < h < h0 + 20:
                parts.append(shapes.capsule(u, w, h, (u0, w0, h0), (u1, w1, h1), r0, r1))
    if -72 < h < -40:
        parts.append(shapes.ellipsoid(u, w, h, (28, -16, -56), (10, 9, 13)))
    if h > HEAD_R + 1:
        return np.full(u.shape, np.inf), 2.0
    sdf = parts[0]
    for p in parts[1:]:
        sdf = shapes.smooth_min(sdf, p, 4.0)
    cortex = 2.0 + 4.5 * float(np.clip((-60.0 - h) / 50.0, 0.0, 1.0))
    return sdf, cortex


# Ilium: per height, anterior end A (u, w), posterior end (d from midline, w),
# lateral bulge of the curve and thickness. Heights between ILIUM_RANGE.
_IL_H = np.array([12, 25, 40, 55, 70, 85, 100, 106], dtype=float)
_IL = PchipInterpolator(_IL_H, np.array([
    # A_u, A_w, P_d, P_w, bulge, thickness
    (8, 28, 58, -34, 0, 30),
    (12, 38, 62, -42, 2, 22),
    (18, 48, 62, -50, 8, 14),
    (28, 56, 61, -62, 16, 9),
    (38, 48, 60, -66, 22, 7),
    (44, 32, 58, -72, 22, 8),
    (46, 12, 56, -78, 18, 12),
    (46, 6, 56, -80, 18, 9),
], dtype=float), axis=0)


def ilium_curve(h: float, head_x: float) -> tuple[np.ndarray, float] | None:
    """(15, 2) points of the iliac wing's mid-curve (A to P) in the pelvic frame, and its thickness."""
    if not ILIUM_RANGE[0] <= h <= ILIUM_RANGE[1]:
        return None
    au, aw, pd, pw, bulge, thick = _IL(h)
    if h > ILIUM_RANGE[1] - 6:  # the crest rounds off
        thick *= np.sqrt(max(ILIUM_RANGE[1] - h, 0.0) / 6.0)
    a = np.array([au, aw])
    p = np.array([pd - head_x, pw])
    t = (p - a) / np.linalg.norm(p - a)
    lateral = np.array([-t[1], t[0]]) if -t[1] > 0 else np.array([t[1], -t[0]])
    return shapes.bezier_points(a, (a + p) / 2 + bulge * lateral, p, n=10), float(thick)


def ilium_frame(h: float, head_x: float, s: float, n: float) -> tuple[float, float, float]:
    """(u, w, tangent angle) of the point ``n`` mm lateral of the iliac curve at parameter ``s``."""
    curve = ilium_curve(float(np.clip(h, *ILIUM_RANGE)), head_x)
    assert curve is not None
    pts = curve[0]
    i = min(int(s * (len(pts) - 1)), len(pts) - 2)
    t = pts[i + 1] - pts[i]
    t /= np.linalg.norm(t)
    lateral = np.array([-t[1], t[0]]) if -t[1] > 0 else np.array([t[1], -t[0]])
    frac = s * (len(pts) - 1) - i
    c = pts[i] + frac * (pts[i + 1] - pts[i]) + n * lateral
    return float(c[0]), float(c[1]), float(np.arctan2(t[1], t[0]))


def pelvis(u: np.ndarray, w: np.ndarray, h: float, head_x: float) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance of one hip bone, and the mask of its hip-joint space."""
    r = np.sqrt(u * u + w * w + h * h)
    r_in = HEAD_R + JOINT_GAP
    inside_cup = (u * CUP_AXIS[0] + w * CUP_AXIS[1] + h * CUP_AXIS[2]) < 3.0
    sdf = np.full(u.shape, np.inf)
    joint = np.zeros(u.shape, dtype=bool)
    if -28 < h < 30:
        cup = np.maximum(np.maximum(r - (r_in + 11.0), r_in - r), u * CUP_AXIS[0] + w * CUP_AXIS[1] + h * CUP_AXIS[2] - 3.0)
        body = np.maximum(shapes.ellipsoid(u, w, h, (-22, -8, 6), (16, 30, 30)), r_in - r)
        sdf = shapes.smooth_min(cup, body, 4.0)
        joint = (r >= HEAD_R) & (r < r_in) & inside_cup
    curve = ilium_curve(h, head_x)
    if curve is not None:
        pts, reach = curve[0], curve[1] / 2 + 8.0
        near = np.flatnonzero((u > pts[:, 0].min() - reach) & (u < pts[:, 0].max() + reach)
                              & (w > pts[:, 1].min() - reach) & (w < pts[:, 1].max() + reach))
        wing = np.full(u.shape, np.inf)
        wing[near] = shapes.polyline(u[near], w[near], pts)[0] - curve[1] / 2
        sdf = shapes.smooth_min(sdf, wing, 5.0)
    sym = 14.0 - head_x  # u of the pubic body (14 mm from the midline)
    if -55 < h < 0:
        for part in (
            shapes.capsule(u, w, h, (-15, 22, -8), (sym + 2, 44, -26), 10.0, 9.0),
            shapes.ellipsoid(u, w, h, (sym, 44, -31), (10, 11, 15)),
            shapes.capsule(u, w, h, (sym + 2, 38, -42), (-14, -30, -50), 7.0, 7.0),
            shapes.capsule(u, w, h, (-20, -30, -4), (-14, -36, -42), 11.0, 11.0),
            shapes.ellipsoid(u, w, h, (-12, -38, -47), (14, 13, 10)),
        ):
            sdf = shapes.smooth_min(sdf, part, 4.0)
    sdf = np.maximum(sdf, r_in - r)  # never inside the femoral head's socket
    return sdf, joint & (sdf > 0)


_SAC_H = np.array([-10, 5, 25, 45, 60, 72], dtype=float)
_SAC = PchipInterpolator(_SAC_H, np.array([
    # centre w, half-width, half-depth
    (-86, 9, 6), (-82, 22, 10), (-72, 34, 13), (-62, 47, 16), (-55, 52, 18), (-47, 50, 17),
], dtype=float), axis=0)


def sacrum(d: np.ndarray, w: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance of the sacrum (midline frame) and its canal (a hole)."""
    if not SACRUM_RANGE[0] <= h <= SACRUM_RANGE[1]:
        return np.full(d.shape, np.inf), np.zeros(d.shape, dtype=bool)
    wc, hw, hd = _SAC(h)
    taper = min(1.0, (h - SACRUM_RANGE[0]) / 4.0 + 0.3, (SACRUM_RANGE[1] - h) / 3.0 + 0.4)
    hw, hd = hw * taper, hd * taper
    ww = w - wc + 0.6 * hd * (d / hw) ** 2  # the alae sweep backwards
    sdf = shapes.ellipse(d, ww, 0.0, 0.0, hw, hd, 0.0)
    if h > 40:
        sdf = shapes.smooth_min(sdf, shapes.ellipse(d, w, 0.0, wc + 6, 25.0 * taper, 16.0 * taper, 0.0), 5.0)
    canal = np.zeros(d.shape, dtype=bool)
    if h > 12:
        canal = shapes.ellipse_q(d, w, 0.0, wc - 0.35 * hd, 0.28 * hw, 0.3 * hd, 0.0) < 1.0
    return sdf, canal


def lumbar(d: np.ndarray, w: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L5 above the sacrum (bone without a label): signed distance, canal, disc."""
    empty = np.zeros(d.shape, dtype=bool)
    if h <= SACRUM_RANGE[1]:
        return np.full(d.shape, np.inf), empty, empty
    body = shapes.ellipse(d, w, 0.0, -42.0, 26.0, 19.0, 0.0)
    if h < SACRUM_RANGE[1] + 8:
        return np.full(d.shape, np.inf), empty, body < 0
    arch = np.maximum(shapes.ellipse(d, w, 0.0, -72.0, 17.0, 13.0, 0.0), -shapes.ellipse(d, w, 0.0, -71.0, 10.0, 8.0, 0.0))
    sdf = shapes.smooth_min(body, arch, 3.0)
    sdf = np.minimum(sdf, shapes.capsule(d, w, h, (0, -82, h), (0, -100, h), 5.0, 4.0))
    canal = shapes.ellipse_q(d, w, 0.0, -71.0, 10.0, 8.0, 0.0) < 1.0
    return sdf, canal, empty
