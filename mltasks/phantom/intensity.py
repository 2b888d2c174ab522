"""CT numbers: the tissue model (per-muscle offsets, texture) and the scanner (blur, noise, streaks).

Random fields come from ``numpy.random.Generator(PCG64)`` seeded by the patient
seed and filtered with scipy's separable Gaussian (single-threaded, no BLAS),
so the result is byte-identical for a seed on any machine.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mltasks.geometry import Geometry
from mltasks.phantom.params import SIDES, PatientParams
from mltasks.phantom.slices import SiteInfo
from mltasks.phantom.tissue import BONE, N_TISSUES, T, base_hu

BONE_LUT = np.isin(np.arange(N_TISSUES), BONE)


def _field(rng: np.random.Generator, shape: tuple[int, ...], sigma: tuple[float, ...]) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation (float32)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    out = ndimage.gaussian_filter(white, sigma, mode="nearest", truncate=3.0)
    return out / _filter_gain(sigma)


def _filter_gain(sigma: tuple[float, ...]) -> float:
    """Standard deviation of filtered unit white noise, from the kernel itself."""
    gain = 1.0
    for s in sigma:
        if s <= 0:
            continue
        r = int(3.0 * s + 0.5)
        delta = np.zeros(2 * r + 1)
        delta[r] = 1.0
        k = ndimage.gaussian_filter1d(delta, s, truncate=3.0)
        gain *= float(np.sqrt((k * k).sum()))
    return gain


def _coarse_field(rng: np.random.Generator, shape: tuple[int, int, int], spacing: tuple) -> np.ndarray:
    """Unit-variance random field with about 6 mm correlation, made at low resolution and upsampled."""
    step = [max(1, int(4.0 / s)) for s in spacing]
    small = [-(-n // st) + 1 for n, st in zip(shape, step, strict=False)]
    field = _field(rng, tuple(small), tuple(3.0 / (s * st) for s, st in zip(spacing, step, strict=False)))
    for axis, (n, st) in enumerate(zip(shape, step, strict=True)):
        field = upsample(field, axis, n, st)
    return field


def upsample(a: np.ndarray, axis: int, n: int, step: int) -> np.ndarray:
    """Linear interpolation of ``a`` along ``axis`` onto ``n`` samples ``step`` times denser."""
    pos = np.arange(n) / step
    i0 = np.minimum(pos.astype(np.int64), a.shape[axis] - 2) if a.shape[axis] > 1 else np.zeros(n, np.int64)
    f = (pos - i0).astype(a.dtype)
    shape = [1] * a.ndim
    shape[axis] = n
    f = f.reshape(shape)
    lo = np.take(a, i0, axis=axis)
    hi = np.take(a, np.minimum(i0 + 1, a.shape[axis] - 1), axis=axis)
    return lo + (hi - lo) * f


def tissue_model(tissue: np.ndarray, site: np.ndarray, sites: list[SiteInfo], side_of: np.ndarray,
                 p: PatientParams, geometry: Geometry) -> np.ndarray:
    """(z, y, x) float64 HU before the scanner: per-tissue values plus texture.

    Muscle: patient base + per-muscle offset + fine texture; a muscle with
    fatty infiltration is darker and marbled (never below -30 HU, so it stays
    soft tissue). Bone: cortex and cancellous bone with trabecular texture.
    """
    rng = np.random.Generator(np.random.PCG64([p.seed, 11]))
    sz, sy, sx = geometry.spacing
    fine = _field(rng, tissue.shape, (0.0, max(1.2 / sy, 0.3), max(1.2 / sx, 0.3)))
    coarse = _coarse_field(rng, tissue.shape, (sz, sy, sx))
    amp = np.zeros(N_TISSUES, np.float32)
    amp[[T.MUSCLE, T.CORTEX, T.CANCELLOUS, T.MARROW, T.FAT, T.SUBQ_FAT]] = (5.0, 60.0, 35.0, 35.0, 6.0, 6.0)
    amp[[T.ARM_MUSCLE, T.ARM_CORTEX, T.ARM_MARROW, T.ARM_FAT]] = (5.0, 60.0, 35.0, 6.0)
    hu = base_hu(p).astype(np.float32)[tissue]
    hu += amp[tissue] * fine
    offset = np.zeros(512, np.float32)
    infil = np.zeros(512, np.float32)
    for j in range(len(SIDES)):
        for i, s in enumerate(sites):
            if s.label:
                offset[256 * j + i + 1] = p.muscle_hu_offset[s.label]
                infil[256 * j + i + 1] = p.sides[j].fat_infiltration[s.label]
            elif s.kind == "other":
                offset[256 * j + i + 1] = 3.0
    muscle = np.flatnonzero(tissue == T.MUSCLE)
    key = site.reshape(-1)[muscle].astype(np.int32) + 256 * side_of.reshape(-1)[muscle].astype(np.int32)
    f = infil[key]
    flat = hu.reshape(-1)
    m_hu = flat[muscle]
    marbling = np.clip(coarse.reshape(-1)[muscle] - (1.5 - 1.5 * f), 0.0, 1.0) * (m_hu + 30.0) * (f > 0)
    # muscle stays soft tissue and bone stays bone whatever the texture
    flat[muscle] = np.clip(m_hu + offset[key] - 18.0 * f - marbling, -30.0, 100.0)
    bone = np.flatnonzero(BONE_LUT[tissue.reshape(-1)])
    flat[bone] = np.maximum(flat[bone], 100.0)
    bowel = np.flatnonzero(tissue == T.BOWEL)
    flat[bowel] += 12.0 * coarse.reshape(-1)[bowel]
    return hu


def scanner(hu_clean: np.ndarray, tissue: np.ndarray, p: PatientParams, geometry: Geometry, *,
            noise: bool = True, streaks: bool = False) -> np.ndarray:
    """(z, y, x) int16 HU: partial-volume blur, correlated noise, optional streaks, rounding."""
    sz, sy, sx = geometry.spacing
    sigma = (0.0, max(p.psf_mm / sy, 0.35), max(p.psf_mm / sx, 0.35))
    hu = hu_clean.astype(np.float32)
    if noise:  # quantum noise, correlated by the same reconstruction kernel as the image
        rng = np.random.Generator(np.random.PCG64([p.seed, 13]))
        hu += (p.noise_sd / _filter_gain(sigma)) * rng.standard_normal(hu.shape, dtype=np.float32)
    hu = ndimage.gaussian_filter(hu, sigma, mode="nearest", truncate=3.0)
    if streaks:
        _add_streaks(hu, tissue, p, geometry)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def _add_streaks(hu: np.ndarray, tissue: np.ndarray, p: PatientParams, geometry: Geometry) -> None:
    """Beam-hardening-like dark/bright streaks through the densest bone of each slice."""
    rng = np.random.Generator(np.random.PCG64([p.seed, 17]))
    nz, ny, nx = hu.shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    angles = rng.uniform(0.0, np.pi, size=4)
    amps = rng.uniform(30.0, 90.0, size=4) * rng.choice([-1.0, 1.0], size=4)
    for k in range(nz):
        cort = np.flatnonzero(tissue[k] == T.CORTEX)
        if cort.size < 20:
            continue
        cy, cx = np.divmod(cort, nx)
        y0, x0 = float(cy.mean()), float(cx.mean())
        for a, amp in zip(angles + 0.01 * k, amps, strict=False):
            dist = (xx - x0) * np.sin(a) - (yy - y0) * np.cos(a)
            hu[k] += amp * np.exp(-0.5 * dist * dist) * (cort.size / (nx * ny / 60.0)) ** 0.5
