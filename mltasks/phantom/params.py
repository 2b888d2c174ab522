"""Random patient parameters of the phantom, drawn once per seed.

Choosing the random parameters is kept apart from applying them (``anatomy``,
``generate``), so the geometry is a pure function of a ``PatientParams``.
All lengths are in mm; anatomy tables are written for a template patient and
scaled by ``scale``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mltasks.labels import DEFAULT_STRUCTURES

MUSCLES: tuple[str, ...] = tuple(name for name, kind, _ in DEFAULT_STRUCTURES if kind == "muscle")
SIDES: tuple[str, str] = ("right", "left")  # index 0: patient right (x < 0 in LPS)


@dataclass
class SideParams:
    """One leg / hemipelvis. Angles in degrees, lengths in template mm."""

    head_x: float  # distance of the femoral head centre from the midline
    rotation: float  # hip internal (+) / external (-) rotation
    abduction: float
    flexion: float
    size: float  # mild left-right asymmetry of all sizes
    muscle_size: dict[str, float] = field(default_factory=dict)
    fat_infiltration: dict[str, float] = field(default_factory=dict)  # 0..1 per muscle


@dataclass
class PatientParams:
    seed: int
    scale: float  # overall body size
    head_level: float  # mm above the bottom slice of the default field of view
    muscle_bulk: float
    fat_mm: float  # subcutaneous fat thickness
    fat_posterior: float  # extra fraction of fat behind (buttocks)
    shift: tuple[float, float]  # (x, y) mm shift of the whole patient
    head_y: float  # y of the femoral head centres (LPS, mm)
    sides: tuple[SideParams, SideParams]
    deform: np.ndarray  # (2, K, 5): per component K waves (amp, kx, ky, kz, phase)
    plane_field: np.ndarray  # (K, 4): (kx, ky, kz, phase) of the fat-plane field
    plane_threshold: float  # fat planes exist where the field exceeds this
    plane_width: float  # maximal fat-plane width, mm
    pair_factor: np.ndarray  # (n, n) per muscle pair plane factor in [0, 1]
    muscle_hu: float
    muscle_hu_offset: dict[str, float]
    fat_hu: float
    cortex_hu: float
    cancellous_hu: float
    marrow_hu: float
    noise_sd: float
    psf_mm: float
    bladder_radius: float
    bowel_field: np.ndarray  # (K, 4) waves of the bowel texture field
    table_y: float  # top of the scan table, mm below the lowest skin
    phantom_height: float
    phantom_rods: tuple[float, ...]  # HU of the calibration rods


def _waves(rng: np.random.Generator, k: int, wavelength: tuple[float, float]) -> np.ndarray:
    """(k, 4) plane waves: unit-random direction scaled to 2 pi / wavelength, and a phase."""
    direction = rng.normal(size=(k, 3))
    direction /= np.sqrt((direction**2).sum(axis=1, keepdims=True))
    lam = rng.uniform(*wavelength, size=(k, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(k, 1))
    return np.concatenate([direction * (2 * np.pi / lam), phase], axis=1)


def _side(rng: np.random.Generator, base: dict[str, float]) -> SideParams:
    muscle_size = {m: base[m] * float(np.exp(rng.normal(0.0, 0.05))) for m in MUSCLES}
    infiltration = {m: 0.0 for m in MUSCLES}
    if rng.uniform() < 0.35:  # atrophy of one muscle on this side, with fatty infiltration
        m = MUSCLES[int(rng.integers(len(MUSCLES)))]
        muscle_size[m] *= float(rng.uniform(0.45, 0.75))
        infiltration[m] = float(rng.uniform(0.3, 0.8))
    return SideParams(
        head_x=float(rng.uniform(-2.0, 2.0)),
        rotation=float(rng.normal(0.0, 6.0)),
        abduction=float(rng.uniform(-2.0, 3.0)),
        flexion=float(rng.normal(0.0, 2.0)),
        size=float(np.exp(rng.normal(0.0, 0.015))),
        muscle_size=muscle_size,
        fat_infiltration=infiltration,
    )


def sample_params(seed: int) -> PatientParams:
    """All random choices for one phantom patient, a pure function of ``seed``."""
    rng = np.random.Generator(np.random.PCG64([int(seed), 7]))
    scale = float(np.clip(rng.normal(1.0, 0.05), 0.9, 1.08))
    bulk = float(np.clip(rng.normal(1.0, 0.08), 0.82, 1.18))
    base = {m: float(np.exp(rng.normal(0.0, 0.08))) for m in MUSCLES}
    head_x = float(rng.uniform(80.0, 88.0))
    sides = (_side(rng, base), _side(rng, base))
    for sp in sides:
        sp.head_x += head_x
    rotation = float(rng.normal(0.0, 8.0))
    abduction = float(rng.uniform(0.0, 6.0))
    for sp in sides:
        sp.rotation += rotation
        sp.abduction += abduction
    amp = rng.uniform(1.5, 4.0, size=(2, 4, 1))
    deform = np.concatenate([amp, np.stack([_waves(rng, 4, (90.0, 220.0)) for _ in range(2)])], axis=2)
    n = len(MUSCLES) + 4
    pair = rng.uniform(0.0, 1.0, size=(n, n)) ** 0.7
    pair = np.where(rng.uniform(size=(n, n)) < 0.25, 0.0, pair)  # fused pairs: no plane at all
    pair = np.triu(pair) + np.triu(pair, 1).T
    rods = tuple(float(v) for v in np.sort(rng.uniform(40.0, 900.0, size=5)))
    return PatientParams(
        seed=int(seed),
        scale=scale,
        head_level=float(rng.normal(192.0, 5.0)),
        muscle_bulk=bulk,
        fat_mm=float(np.clip(rng.lognormal(np.log(16.0), 0.45), 5.0, 45.0)),
        fat_posterior=float(rng.uniform(0.1, 0.8)),
        shift=(float(rng.normal(0.0, 6.0)), float(rng.normal(0.0, 4.0))),
        head_y=float(rng.uniform(-20.0, -5.0)),
        sides=sides,
        deform=deform,
        plane_field=_waves(rng, 6, (25.0, 70.0)),
        plane_threshold=float(rng.uniform(-0.2, 0.5)),
        plane_width=float(rng.uniform(1.0, 2.2)),
        pair_factor=pair,
        muscle_hu=float(rng.uniform(38.0, 54.0)),
        muscle_hu_offset={m: float(rng.normal(0.0, 4.0)) for m in MUSCLES},
        fat_hu=float(rng.uniform(-115.0, -85.0)),
        cortex_hu=float(rng.uniform(1000.0, 1450.0)),
        cancellous_hu=float(rng.uniform(180.0, 300.0)),
        marrow_hu=float(rng.uniform(100.0, 170.0)),
        noise_sd=float(rng.uniform(10.0, 20.0)),
        psf_mm=float(rng.uniform(0.5, 0.8)),
        bladder_radius=float(rng.uniform(18.0, 42.0)),
        bowel_field=_waves(rng, 6, (18.0, 45.0)),
        table_y=float(rng.uniform(0.0, 3.0)),
        phantom_height=float(rng.uniform(28.0, 40.0)),
        phantom_rods=rods,
    )
