"""Approximate signed distances (mm, negative inside) of simple shapes, on flat arrays.

Every function takes point coordinates as equally shaped float64 arrays and
returns an array of that shape. Only elementwise numpy is used (no BLAS), so
results do not depend on the machine's thread count.
"""

from __future__ import annotations

import numpy as np


def ellipse(u: np.ndarray, w: np.ndarray, cu: float, cw: float, a: float, b: float, theta: float) -> np.ndarray:
    """Ellipse centred (cu, cw), semi-axis ``a`` along angle ``theta`` (rad), ``b`` across.

    Distance estimate f / |grad f| of f = r^2 - 1 (r the normalised radius): exact
    on the boundary, good near it, -inf at the centre.
    """
    du, dw = u - cu, w - cw
    c, s = np.cos(theta), np.sin(theta)
    p = (du * c + dw * s) / a
    q = (-du * s + dw * c) / b
    pa, qb = p / a, q / b
    with np.errstate(divide="ignore"):
        return (p * p + q * q - 1.0) / (2.0 * np.sqrt(pa * pa + qb * qb))


def ellipse_q(u: np.ndarray, w: np.ndarray, cu: float, cw: float, a: float, b: float, theta: float) -> np.ndarray:
    """Normalised elliptical radius: 1 on the boundary (cheaper than ``ellipse``)."""
    du, dw = u - cu, w - cw
    c, s = np.cos(theta), np.sin(theta)
    p = (du * c + dw * s) / a
    q = (-du * s + dw * c) / b
    return np.sqrt(p * p + q * q)


def ellipsoid(u: np.ndarray, w: np.ndarray, h: float, centre: tuple, axes: tuple) -> np.ndarray:
    """Axis-aligned ellipsoid cut at height ``h``: (q - 1) * smallest axis."""
    q = np.sqrt(((u - centre[0]) / axes[0]) ** 2 + ((w - centre[1]) / axes[1]) ** 2 + ((h - centre[2]) / axes[2]) ** 2)
    return (q - 1.0) * min(axes)


def capsule(u: np.ndarray, w: np.ndarray, h: float, a: tuple, b: tuple, ra: float, rb: float) -> np.ndarray:
    """Cone-like capsule from 3D point ``a`` (radius ra) to ``b`` (radius rb), cut at height h."""
    d = np.array(b, dtype=float) - np.array(a, dtype=float)
    dd = float((d * d).sum())
    t = ((u - a[0]) * d[0] + (w - a[1]) * d[1] + (h - a[2]) * d[2]) / dd
    t = np.clip(t, 0.0, 1.0)
    pu, pw, ph = u - a[0] - t * d[0], w - a[1] - t * d[1], h - a[2] - t * d[2]
    return np.sqrt(pu * pu + pw * pw + ph * ph) - (ra + t * (rb - ra))


def sphere(u: np.ndarray, w: np.ndarray, h: float, centre: tuple, r: float) -> np.ndarray:
    return np.sqrt((u - centre[0]) ** 2 + (w - centre[1]) ** 2 + (h - centre[2]) ** 2) - r


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (blends two distance fields over a width ``k`` mm)."""
    with np.errstate(invalid="ignore"):  # inf - inf where both are far away
        hh = np.nan_to_num(np.maximum(k - np.abs(a - b), 0.0) / k)
    return np.minimum(a, b) - hh * hh * k * 0.25


def bezier_points(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int = 14) -> np.ndarray:
    """(n + 1, 2) points of the quadratic Bezier curve p0 -> p2 with control point p1."""
    t = np.linspace(0.0, 1.0, n + 1)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t * t * p2


def polyline(u: np.ndarray, w: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance to a polyline and the curve parameter (0..1) of the nearest point.

    Args:
        pts: (n + 1, 2) vertices.
    Returns:
        (distance, s), each shaped like ``u``.
    """
    best = np.full(u.shape, np.inf)
    s_best = np.zeros(u.shape)
    n = len(pts) - 1
    for i in range(n):
        a, b = pts[i], pts[i + 1]
        du, dw = b[0] - a[0], b[1] - a[1]
        t = np.clip(((u - a[0]) * du + (w - a[1]) * dw) / (du * du + dw * dw), 0.0, 1.0)
        d = np.hypot(u - a[0] - t * du, w - a[1] - t * dw)
        closer = d < best
        best = np.where(closer, d, best)
        s_best = np.where(closer, (i + t) / n, s_best)
    return best, s_best


def waves(x: np.ndarray, y: np.ndarray, z: float, table: np.ndarray) -> np.ndarray:
    """Sum of plane waves sin(k . p + phase), normalised to unit variance.

    Args:
        table: (K, 4) rows (kx, ky, kz, phase) in rad/mm.
    """
    out = np.zeros(x.shape)
    for kx, ky, kz, ph in table:
        out += np.sin(kx * x + ky * y + (kz * z + ph))
    return out * np.sqrt(2.0 / len(table))
