"""The synthetic hip-and-thigh CT: determinism, anatomy, CT numbers, body mask, sides, speed."""

from __future__ import annotations

import time

import cc3d
import numpy as np
import pytest

from mltasks.phantom import generate_phantom
from mltasks.phantom.tissue import T

INF = 1e9
# Anatomical z ranges in mm relative to the femoral head centre:
# (must be present on every slice in [lo, hi], may never extend beyond [min, max]).
EXPECTED = {
    "pelvis": ((-40, 90), (-70, 115)),
    "femur": ((-INF, 15), (-INF, 30)),
    "sacrum": ((0, 60), (-20, 85)),
    "gluteus_maximus": ((-100, 60), (-170, 100)),
    "gluteus_medius": ((-10, 90), (-40, 115)),
    "gluteus_minimus": ((0, 60), (-30, 95)),
    "iliacus": ((-40, 90), (-75, 115)),
    "obturator_externus": ((-28, -12), (-55, 10)),
    "obturator_internus": ((-28, 12), (-55, 40)),
    "pectineus": ((-60, -15), (-110, 0)),
    "piriformis": ((10, 45), (-10, 70)),
    "psoas_major": ((-40, INF), (-80, INF)),
    "adductors": ((-INF, -40), (-INF, -5)),
    "biceps_femoris": ((-INF, -120), (-INF, -40)),
    "gracilis": ((-INF, -60), (-INF, -25)),
    "rectus_femoris": ((-INF, 0), (-INF, 35)),
    "sartorius": ((-INF, 30), (-INF, 65)),
    "semimembranosus": ((-INF, -90), (-INF, -40)),
    "semitendinosus": ((-INF, -90), (-INF, -40)),
    "tensor_fasciae_latae": ((-100, 30), (-160, 60)),
    "vastus_lateralis_intermedius": ((-INF, -40), (-INF, 0)),
    "vastus_medialis": ((-INF, -90), (-INF, -50)),
}
SHAPE = (72, 128, 128)


@pytest.fixture(scope="module")
def sided():
    return generate_phantom(4, shape=SHAPE, sided=True, calibration_phantom=True)


def _heights(ph) -> np.ndarray:
    """(z,) height of every slice above the femoral head centre, mm."""
    g = ph.geometry
    return g.origin[2] + np.arange(g.shape[0]) * g.spacing[0] - ph.params.head_level


def test_it_is_byte_identical_for_a_seed_and_differs_for_another():
    a = generate_phantom(11, shape=(32, 64, 64))
    b = generate_phantom(11, shape=(32, 64, 64))
    c = generate_phantom(12, shape=(32, 64, 64))
    assert a.hu.dtype == np.int16 and a.labels.dtype == np.uint8 and a.body.dtype == bool
    assert a.hu.shape == a.labels.shape == a.body.shape == (32, 64, 64)
    assert a.hu.tobytes() == b.hu.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    assert a.geometry == b.geometry
    assert a.hu.tobytes() != c.hu.tobytes()
    assert a.labels.tobytes() != c.labels.tobytes()


def test_default_geometry_covers_a_plausible_field_of_view():
    ph = generate_phantom(1, shape=(32, 64, 80), noise=False)
    sz, sy, sx = ph.geometry.spacing
    assert (sy * 64, sx * 80) == pytest.approx((380.0, 380.0))
    assert sz * 32 == pytest.approx(290.0)
    assert ph.geometry.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def test_every_structure_is_one_connected_region_within_its_z_range(sided):
    """26-connectivity in 3D, separately for every sided label."""
    h = _heights(sided)
    for lab in sided.label_set.labels:
        (lo, hi), (mn, mx) = EXPECTED[lab.base]
        mask = sided.labels == lab.value
        present = mask.any(axis=(1, 2))
        assert present.any(), f"{lab.name} missing"
        must = (h >= lo) & (h <= hi)
        assert present[must].all(), f"{lab.name} absent at {h[must & ~present]} mm"
        assert h[present].min() >= mn and h[present].max() <= mx, f"{lab.name} spans {h[present].min()}..{h[present].max()}"
        n = int(cc3d.connected_components(mask, connectivity=26).max())
        assert n == 1, f"{lab.name} has {n} components"


def test_labels_sit_on_the_right_tissue_and_ct_numbers(sided):
    """On the noiseless tissue model: muscle labels on soft tissue, bone labels on bone."""
    ls = sided.label_set
    muscle = np.isin(sided.labels, ls.values_of_kind("muscle"))
    bone = np.isin(sided.labels, ls.values_of_kind("bone"))
    assert (sided.tissue[muscle] == T.MUSCLE).all()
    assert np.isin(sided.tissue[bone], (T.CORTEX, T.CANCELLOUS, T.MARROW)).all()
    clean = sided.hu_clean
    assert clean[muscle].min() >= -30 and clean[muscle].max() <= 100
    assert clean[bone].min() >= 100
    assert 30 <= np.median(clean[muscle]) <= 60
    assert 700 <= np.median(clean[sided.tissue == T.CORTEX]) <= 1500
    assert -1001 <= np.median(clean[sided.tissue == T.AIR]) <= -999
    assert -125 <= np.median(clean[sided.tissue == T.SUBQ_FAT]) <= -75


def test_noise_has_the_requested_standard_deviation():
    a = generate_phantom(7, shape=(16, 96, 96))
    b = generate_phantom(7, shape=(16, 96, 96), noise=False)
    assert np.array_equal(a.labels, b.labels)
    diff = a.hu.astype(np.float64) - b.hu
    assert 9.0 <= diff.std() <= 21.0
    assert abs(diff.std() - a.params.noise_sd) < 1.5


def test_table_and_calibration_phantom_are_outside_the_body_and_touch_it(sided):
    support = sided.tissue >= T.TABLE_SHELL
    assert support.any() and not (support & sided.body).any()
    block = (sided.tissue == T.BLOCK) | (sided.tissue >= T.ROD)
    assert block.any()
    assert (sided.labels[~sided.body] == 0).all()
    # the block touches the skin: some body voxel lies right above a block voxel (y + 1 is posterior)
    assert (sided.body[:, :-1, :] & block[:, 1:, :]).any()
    rods = sided.tissue >= T.ROD
    assert sided.hu_clean[rods].min() >= 40


def test_sided_labels_are_distinct_and_mirror_correctly(sided):
    ls = sided.label_set
    nx = sided.geometry.shape[2]
    x = sided.geometry.origin[0] + np.arange(nx) * sided.geometry.spacing[2]
    midline = sided.params.shift[0]
    for lab in ls.labels:
        if not lab.side:
            continue
        cols = np.nonzero((sided.labels == lab.value).any(axis=(0, 1)))[0]
        # LPS: patient left is +x
        assert (x[cols] > midline).all() if lab.side == "left" else (x[cols] < midline).all(), lab.name
    # the shared map is the sided one with sides merged
    small_sided = generate_phantom(4, shape=(24, 64, 64), sided=True, noise=False)
    shared = generate_phantom(4, shape=(24, 64, 64), noise=False)
    to_shared = np.zeros(ls.n_classes, np.uint8)
    for lab in ls.labels:
        to_shared[lab.value] = shared.label_set.value_of(lab.base)
    assert np.array_equal(to_shared[small_sided.labels], shared.labels)
    assert np.array_equal(small_sided.hu, shared.hu)
    # mirror images: the centroid of each left structure reflected about the midline lies
    # near its right twin's (asymmetry, hip rotation and abduction differ a little)
    g = sided.geometry
    zyx_mm = [g.origin[2 - a] + np.arange(n) * g.spacing[a] for a, n in enumerate(g.shape)]
    for lab in ls.labels:
        if lab.side != "left":
            continue
        twin = ls.value_of(f"{lab.base}_right")
        c_left = [zyx_mm[a][np.nonzero(sided.labels == lab.value)[a]].mean() for a in range(3)]
        c_right = [zyx_mm[a][np.nonzero(sided.labels == twin)[a]].mean() for a in range(3)]
        c_right[2] = 2 * midline - c_right[2]
        assert np.abs(np.subtract(c_left, c_right)).max() < 30.0, (lab.base, c_left, c_right)
    # the label set's flip table swaps exactly these ids
    assert all(ls.flip_lut[lab.value] == ls.value_of(f"{lab.base}_right") for lab in ls.labels if lab.side == "left")


def test_a_small_volume_is_fast():
    generate_phantom(0, shape=(8, 32, 32))  # warm-up of imports and caches
    t = time.process_time()
    generate_phantom(5, shape=(32, 64, 64))
    assert time.process_time() - t < 2.0


def test_streaks_only_when_asked_and_only_in_the_image():
    plain = generate_phantom(6, shape=(12, 64, 64))
    streaky = generate_phantom(6, shape=(12, 64, 64), streaks=True)
    assert np.array_equal(plain.labels, streaky.labels)
    assert np.array_equal(plain.hu_clean, streaky.hu_clean)
    assert not np.array_equal(plain.hu, streaky.hu)
