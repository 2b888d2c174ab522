"""Soft-tissue anatomy of the template: muscle, vessel and cavity sites, body outline.

Each site is an ellipse whose centre, semi-axes and angle are keyframed along
``h`` (template mm above the femoral head centre) and interpolated with a
monotone cubic (PCHIP), so every structure changes shape gradually and
appears / disappears by shrinking to nothing. Keyframe rows:

- ``("p", h, phi, r, a, b)``: polar around the femoral shaft axis (phi in deg,
  0 lateral, 90 anterior, 180 medial, 270 posterior), ``a`` radial semi-axis,
  ``b`` tangential one;
- ``("c", h, u, w, a, b, theta)``: cartesian in the frame, ``a`` along theta (deg);
- ``("i", h, s, n, a, b)``: ``n`` mm lateral (negative: medial) of the iliac
  curve at parameter s, ``a`` across the wing, ``b`` along it.

A zero-size row marks where a structure ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator

from mltasks.phantom import bones

P, C, IL = "p", "c", "i"


def _thigh(rows):
    """Repeat the lowest row further down so custom fields of view stay covered."""
    first = rows[0]
    return [(first[0], -320.0, *first[2:]), *rows]


SITES: dict[str, tuple[str, str, list]] = {
    # name: (kind, frame, keyframes); kind "muscle" sites carry the label of their name
    "rectus_femoris": ("muscle", "leg", _thigh([
        (P, -200, 88, 50, 13, 22), (P, -150, 85, 50, 15, 22), (P, -110, 80, 47, 16, 22), (P, -80, 75, 45, 15, 20),
        (C, -50, 45, 50, 13, 18, 20), (C, -25, 35, 45, 10, 13, 0), (C, 0, 28, 36, 7, 8, 0), (C, 22, 25, 30, 0, 0, 0)])),
    "vastus_lateralis_intermedius": ("muscle", "leg", _thigh([
        (P, -200, 25, 27, 20, 40), (P, -150, 15, 28, 20, 42), (P, -110, 10, 30, 22, 40), (P, -80, 5, 30, 20, 36),
        (C, -50, 72, 5, 12, 30, 0), (C, -30, 76, -5, 9, 20, 0), (C, -12, 74, -12, 0, 0, 0)])),
    "vastus_medialis": ("muscle", "leg", _thigh([
        (P, -200, 135, 28, 18, 28), (P, -150, 130, 27, 16, 24), (P, -110, 125, 27, 12, 18), (P, -75, 120, 25, 6, 9),
        (P, -60, 120, 24, 0, 0)])),
    "sartorius": ("muscle", "leg", _thigh([
        (P, -200, 150, 58, 9, 16), (P, -150, 135, 62, 9, 16), (P, -110, 115, 65, 9, 16), (P, -80, 100, 65, 9, 15),
        (C, -50, 55, 55, 8, 14, 30), (C, -25, 58, 52, 8, 13, 30), (C, 0, 56, 50, 7, 12, 30),
        (C, 25, 48, 52, 6, 10, 30), (C, 40, 40, 56, 4, 7, 30), (C, 52, 32, 58, 0, 0, 30)])),
    "tensor_fasciae_latae": ("muscle", "leg", [
        (P, -145, 45, 45, 0, 0), (P, -110, 42, 46, 7, 16), (P, -80, 38, 48, 10, 20), (C, -50, 78, 42, 10, 20, 60),
        (C, -25, 78, 40, 11, 20, 60), (C, 0, 70, 42, 10, 18, 60), (C, 25, 58, 50, 7, 12, 60), (C, 50, 40, 60, 0, 0, 60)]),
    "adductors": ("muscle", "leg", _thigh([
        (P, -200, 205, 40, 28, 36), (P, -150, 195, 45, 32, 40), (P, -110, 185, 48, 34, 42), (P, -80, 190, 50, 32, 40),
        (C, -50, -30, 5, 26, 30, 60), (C, -30, -48, 22, 16, 20, 70), (C, -15, -55, 30, 0, 0, 70)])),
    "gracilis": ("muscle", "leg", _thigh([
        (P, -200, 190, 70, 7, 14), (P, -150, 180, 78, 7, 14), (P, -110, 175, 85, 7, 14), (P, -80, 170, 88, 7, 13),
        (C, -50, -62, 12, 7, 12, 90), (C, -35, -66, 22, 0, 0, 90)])),
    "semimembranosus": ("muscle", "leg", _thigh([
        (P, -200, 245, 48, 14, 17), (P, -150, 240, 50, 14, 16), (P, -110, 240, 55, 12, 14), (P, -80, 235, 60, 9, 12),
        (C, -62, -5, -50, 6, 8, 0), (C, -53, -10, -48, 0, 0, 0)])),
    "semitendinosus": ("muscle", "leg", _thigh([
        (P, -200, 260, 63, 10, 15), (P, -150, 258, 66, 12, 15), (P, -110, 255, 72, 12, 15), (P, -80, 250, 72, 11, 13),
        (C, -62, -12, -60, 8, 10, 0), (C, -52, -15, -55, 0, 0, 0)])),
    "biceps_femoris": ("muscle", "leg", _thigh([
        (P, -200, 290, 45, 16, 22), (P, -150, 285, 50, 16, 20), (P, -110, 280, 55, 14, 18), (P, -80, 270, 58, 11, 14),
        (C, -62, -2, -62, 8, 10, 0), (C, -52, -6, -56, 0, 0, 0)])),
    "gluteus_maximus": ("muscle", "leg", [
        (P, -150, 300, 55, 0, 0), (P, -120, 300, 55, 10, 25), (P, -90, 295, 58, 16, 38),
        (C, -60, 25, -60, 55, 18, 30), (C, -30, 26, -66, 62, 19, 32), (C, 0, 24, -70, 64, 19, 30),
        (C, 30, 10, -84, 56, 19, 22), (C, 60, -8, -88, 36, 16, 30), (C, 85, -25, -92, 0, 0, 30)]),
    "gluteus_medius": ("muscle", "leg", [
        (C, -25, 72, -12, 0, 0, 0), (C, -15, 74, -12, 6, 14, 0), (C, 0, 72, -14, 13, 25, 0), (C, 22, 55, -20, 18, 36, 0),
        (IL, 40, 0.5, 22, 16, 48), (IL, 60, 0.5, 22, 16, 55), (IL, 80, 0.5, 18, 12, 50), (IL, 98, 0.45, 12, 7, 30),
        (IL, 110, 0.45, 8, 0, 0)]),
    "gluteus_minimus": ("muscle", "leg", [
        (C, -12, 58, 5, 0, 0, 60), (C, 0, 48, 18, 8, 14, 60), (C, 20, 38, 10, 9, 22, 80),
        (IL, 40, 0.35, 10, 7, 25), (IL, 60, 0.35, 9, 6, 25), (IL, 80, 0.35, 8, 0, 0)]),
    "iliacus": ("muscle", "leg", [
        (C, -62, 22, -8, 0, 0, 0), (C, -50, 18, 8, 7, 9, 45), (C, -30, 8, 28, 10, 13, 45), (C, -10, 5, 40, 11, 15, 30),
        (C, 10, 5, 42, 12, 18, 20), (IL, 35, 0.3, -14, 10, 28), (IL, 55, 0.4, -13, 10, 32), (IL, 75, 0.45, -12, 9, 36),
        (IL, 95, 0.5, -10, 7, 35), (IL, 110, 0.5, -8, 0, 0)]),
    "psoas_major": ("muscle", "leg", [
        (C, -65, 20, -10, 0, 0, 0), (C, -55, 18, 0, 5, 6, 45), (C, -35, 2, 25, 9, 10, 45), (C, -10, -8, 38, 11, 12, 30),
        (C, 15, -14, 35, 12, 13, 30), (C, 40, -28, 2, 13, 14, 55), (C, 60, -36, -24, 14, 15, 70),
        (C, 80, -45, -30, 15, 16, 75), (C, 100, -50, -32, 16, 17, 80), (C, 160, -50, -32, 17, 18, 80)]),
    "obturator_internus": ("muscle", "leg", [
        (C, -42, -38, -8, 0, 0, 90), (C, -32, -40, 4, 16, 7, 90), (C, -15, -42, 0, 26, 8, 90), (C, 0, -40, -10, 28, 8, 80),
        (C, 15, -40, -18, 22, 7, 75), (C, 28, -38, -24, 0, 0, 75)]),
    "obturator_externus": ("muscle", "leg", [
        (C, -42, -30, 15, 0, 0, 0), (C, -32, -28, 14, 14, 7, 10), (C, -22, -10, 0, 26, 8, -25),
        (C, -10, 15, -18, 20, 7, -35), (C, 0, 28, -22, 0, 0, -35)]),
    "pectineus": ("muscle", "leg", [
        (P, -95, 150, 45, 0, 0), (P, -80, 150, 48, 10, 16), (C, -55, -5, 35, 11, 16, 30), (C, -35, -18, 38, 10, 15, 20),
        (C, -20, -28, 38, 7, 12, 10), (C, -8, -35, 38, 0, 0, 0)]),
    "piriformis": ("muscle", "leg", [
        (C, 0, 40, -22, 0, 0, 0), (C, 8, 30, -25, 7, 14, 20), (C, 20, 8, -35, 9, 22, 25), (C, 35, -20, -44, 10, 24, 25),
        (C, 48, -38, -42, 8, 16, 20), (C, 58, -46, -40, 0, 0, 20)]),
    # the obturator internus leaves the pelvis behind the ischium to reach the trochanter
    "obturator_internus@out": ("muscle", "leg", [
        (C, -10, 5, -35, 0, 0, 10), (C, -2, 8, -38, 28, 6, 10), (C, 6, 10, -36, 0, 0, 10)]),
    "quadratus_femoris": ("other", "leg", [
        (C, -58, 10, -30, 0, 0, 0), (C, -48, 12, -30, 22, 8, 10), (C, -32, 10, -32, 22, 8, 10), (C, -22, 8, -32, 0, 0, 10)]),
    "femoral_vessels": ("vessel", "leg", _thigh([
        (P, -200, 165, 42, 5, 7), (P, -150, 155, 45, 5, 7), (P, -110, 145, 50, 5, 7), (C, -60, -12, 50, 5, 8, 0),
        (C, -20, -25, 50, 5, 8, 0), (C, 10, -30, 45, 5, 8, 20), (C, 40, -42, 25, 5, 8, 45), (C, 70, -52, 0, 5, 8, 60),
        (C, 100, -58, -15, 5, 7, 70), (C, 160, -60, -15, 5, 7, 70)])),
    "sciatic_nerve": ("vessel", "leg", _thigh([
        (P, -200, 265, 30, 4, 5), (P, -110, 260, 40, 4, 5), (C, -50, 5, -50, 4, 5, 0), (C, -20, -5, -40, 4, 6, 0),
        (C, 0, -15, -45, 0, 0, 0)])),
    "paraspinal": ("other", "mid_abs", [
        (C, 30, 18, -98, 0, 0, 0), (C, 45, 18, -92, 10, 8, 0), (C, 65, 22, -84, 14, 12, 0), (C, 85, 28, -84, 17, 18, 90),
        (C, 110, 32, -82, 19, 21, 90), (C, 160, 32, -82, 19, 21, 90)]),
    "cavity": ("cavity", "mid", [
        (C, -40, 0, 15, 0, 0, 0), (C, -30, 0, 10, 22, 30, 0), (C, -15, 0, -5, 38, 48, 0), (C, 5, 0, -12, 44, 55, 0),
        (C, 25, 0, -8, 50, 58, 0), (C, 45, 0, -5, 62, 58, 0), (C, 65, 0, 5, 75, 55, 0), (C, 85, 0, 10, 85, 55, 0),
        (C, 160, 0, 10, 88, 55, 0)]),
}

# Body outline pieces: (h, cu, cw, ru, rw). Thigh and buttock in the leg frame, trunk in the midline frame.
THIGH = [(-320, 0, 0, 60, 66), (-200, 2, 0, 62, 68), (-150, 8, -5, 66, 70), (-110, 12, -10, 72, 76),
         (-70, 18, -6, 78, 84), (-40, 24, -2, 80, 84), (0, 28, 0, 80, 82), (40, 25, -15, 70, 72), (160, 20, -20, 60, 60)]
BUTTOCK = [(-110, 20, -55, 0, 0), (-80, 25, -60, 45, 35), (-40, 15, -70, 62, 42), (0, 10, -72, 68, 42),
           (40, 0, -78, 62, 36), (70, -20, -85, 45, 25), (90, -40, -85, 0, 0)]
TRUNK = [(-120, 0, -60, 0, 0), (-80, 0, -55, 70, 45), (-50, 0, -40, 120, 75), (-20, 0, -25, 150, 92),
         (20, 0, -15, 160, 100), (60, 0, -8, 158, 100), (100, 0, -3, 150, 95), (160, 0, 0, 150, 95)]


@dataclass
class Track:
    """A keyframed ellipse: ``at(h)`` gives (cu, cw, a, b, theta_rad), or None where absent."""

    lo: float
    hi: float
    spline: PchipInterpolator

    def at(self, h: float) -> tuple[float, float, float, float, float] | None:
        if not self.lo < h < self.hi:
            return None
        cu, cw, a, b, th = (float(v) for v in self.spline(h))
        if min(a, b) < 0.5:
            return None
        return cu, cw, a, b, th


def _row_to_cartesian(row: tuple, head_x: float) -> tuple[float, ...]:
    kind, h = row[0], float(row[1])
    if kind == P:
        _, _, phi, r, a, b = row
        fu, fw = bones.femur_axis(h)
        t = np.deg2rad(phi)
        return h, float(fu + r * np.cos(t)), float(fw + r * np.sin(t)), a, b, float(t)
    if kind == IL:
        _, _, s, n, a, b = row
        cu, cw, tangent = bones.ilium_frame(h, head_x, s, n)
        return h, cu, cw, a, b, tangent + np.pi / 2
    _, _, u, w, a, b, th = row
    return h, u, w, a, b, float(np.deg2rad(th))


def track(rows: list, head_x: float, size: float = 1.0) -> Track:
    """Interpolate keyframe rows (converted to cartesian for a patient's head distance)."""
    arr = np.array([_row_to_cartesian(r, head_x) for r in rows], dtype=float)
    arr[:, 5] = np.unwrap(2 * arr[:, 5]) / 2  # an ellipse is symmetric under theta + pi
    arr[:, 3:5] *= size
    lo, hi = arr[0, 0], arr[-1, 0]
    if arr[0, 3] > 0:  # tracks that do not shrink at their lower end run off the volume
        lo = -np.inf
    if arr[-1, 3] > 0:
        hi = np.inf
    spline = PchipInterpolator(arr[:, 0], arr[:, 1:], axis=0, extrapolate=True)
    return Track(lo=lo, hi=hi, spline=spline)


def outline_track(rows: list) -> Track:
    arr = np.array([(r[0], r[1], r[2], r[3], r[4], 0.0) for r in rows], dtype=float)
    hi = np.inf if arr[-1, 3] > 0 else arr[-1, 0]
    lo = -np.inf if arr[0, 3] > 0 else arr[0, 0]
    return Track(lo=lo, hi=hi, spline=PchipInterpolator(arr[:, 0], arr[:, 1:], axis=0, extrapolate=True))
