"""Dice, surface and average symmetric surface distance (method.md §6)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from mltasks.errors import InvalidArray
from mltasks.metrics import average_surface_distance, dice, evaluate_volume, surface


def brute_force_asd(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]) -> float:
    """The definition spelled out voxel by voxel: explicit 6-neighbour test, all pairwise distances."""

    def surface_points(mask: np.ndarray) -> np.ndarray:
        points = []
        for v in zip(*np.nonzero(mask), strict=True):
            for axis, step in itertools.product(range(3), (-1, 1)):
                n = list(v)
                n[axis] += step
                if not 0 <= n[axis] < mask.shape[axis] or not mask[tuple(n)]:
                    points.append(v)
                    break
        return np.array(points, dtype=float) * np.array(spacing)

    pa, pb = surface_points(a), surface_points(b)
    d = cdist(pa, pb)
    return float((d.min(axis=1).sum() + d.min(axis=0).sum()) / (len(pa) + len(pb)))


def test_dice_on_hand_counted_masks():
    a = np.zeros(10, dtype=bool)
    b = np.zeros(10, dtype=bool)
    a[0:4] = True  # 4 voxels
    b[1:7] = True  # 6 voxels, 3 shared with a
    assert dice(a, b) == pytest.approx(2 * 3 / (4 + 6))
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    assert dice(a, np.zeros(10, bool)) == 0.0


def test_surface_counts_the_array_border_as_outside():
    # A full 3x3x3 array: every voxel but the centre touches the border.
    assert surface(np.ones((3, 3, 3), bool)).sum() == 26
    # The same cube inside a 5x5x5 zero array has the same 26 surface voxels.
    inner = np.zeros((5, 5, 5), bool)
    inner[1:4, 1:4, 1:4] = True
    assert surface(inner).sum() == 26
    # A one-voxel-thick plate is all surface.
    assert surface(np.ones((1, 4, 4), bool)).sum() == 16


def test_plates_shifted_by_k_slices_are_k_times_the_slice_spacing_apart():
    # Two one-voxel-thick plates: every surface voxel's nearest opposite voxel is
    # straight above/below, k slices of 2.5 mm away.
    for k in (1, 2, 3):
        a = np.zeros((8, 6, 7), bool)
        b = np.zeros_like(a)
        a[1, 1:5, 1:6] = True
        b[1 + k, 1:5, 1:6] = True
        assert average_surface_distance(a, b, (2.5, 0.7, 0.7)) == pytest.approx(2.5 * k, abs=1e-12)


def test_boxes_shifted_by_one_slice_match_the_hand_count():
    # A: z in [1, 5), y in [1, 4), x in [1, 4) (4 x 3 x 3 = 36 voxels, 2 interior:
    # the centre column at z = 2, 3) -> 34 surface voxels. B = A shifted by +1 in z.
    # Spacing (z, y, x) = (2.5, 1.0, 0.8) mm.
    # A -> S_B: bottom layer of A (9 voxels, z = 1) is 2.5 mm below B's bottom
    #   layer: 9 * 2.5 = 22.5. Ring voxels at z = 2..4 are on B's ring: 0.
    #   A's top centre (4, 2, 2) lies inside B; the nearest B surface voxel is a
    #   ring neighbour one x step away: 0.8. Sum 23.3.
    # B -> S_A is the mirror image: 23.3.  ASD = 46.6 / 68.
    a = np.zeros((8, 5, 5), bool)
    a[1:5, 1:4, 1:4] = True
    b = np.roll(a, 1, axis=0)
    spacing = (2.5, 1.0, 0.8)
    assert surface(a).sum() == 34
    assert average_surface_distance(a, b, spacing) == pytest.approx(46.6 / 68, abs=1e-12)
    assert brute_force_asd(a, b, spacing) == pytest.approx(46.6 / 68, abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_boxes_shifted_by_k_slices_match_the_closed_form(k):
    # A: 6 x 3 x 3 box; |S_A| = 9 (bottom) + 9 (top) + 8 * 4 (rings) = 50. B = A + k in z.
    # A -> S_B: every B surface voxel has z >= bottom of B, so A's bottom layer is
    #   k slices away (9 * 2.5k) and A's ring at j slices above its bottom is
    #   (k - j) slices away (8 * 2.5(k - j), j = 1..k-1); the rest of A's ring lies
    #   on B's ring (0); A's top centre is inside B, 0.8 mm (one x step) from
    #   B's ring. Sum_A = 2.5 (9k + 4k(k - 1)) + 0.8; B -> S_A mirrors it.
    # ASD = 2 Sum_A / (2 * 50).
    a = np.zeros((6 + k + 2, 5, 5), bool)
    a[1:7, 1:4, 1:4] = True
    b = np.roll(a, k, axis=0)
    spacing = (2.5, 1.0, 0.8)
    want = (2.5 * (9 * k + 4 * k * (k - 1)) + 0.8) / 50
    assert average_surface_distance(a, b, spacing) == pytest.approx(want, abs=1e-12)
    assert brute_force_asd(a, b, spacing) == pytest.approx(want, abs=1e-12)


def test_a_cube_filling_the_array_against_its_centre_voxel():
    # S_A = 26 voxels (border counts as outside): 6 face centres at 1, 12 edges at
    # sqrt 2, 8 corners at sqrt 3 from the centre; the centre is 1 from S_A.
    a = np.ones((3, 3, 3), bool)
    b = np.zeros_like(a)
    b[1, 1, 1] = True
    want = (6 + 12 * math.sqrt(2) + 8 * math.sqrt(3) + 1) / 27
    assert average_surface_distance(a, b, (1.0, 1.0, 1.0)) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_it_matches_the_brute_force_definition_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    a = rng.random((7, 9, 8)) < 0.35
    b = rng.random((7, 9, 8)) < 0.35
    a[:, :2] = False  # keep one mask off some borders so the crop matters
    spacing = (2.5, 0.7, 1.1)
    assert average_surface_distance(a, b, spacing) == pytest.approx(
        brute_force_asd(a, b, spacing), abs=1e-9
    )


def test_asd_is_symmetric_and_zero_on_identical_masks():
    rng = np.random.default_rng(7)
    a = rng.random((6, 6, 6)) < 0.4
    b = rng.random((6, 6, 6)) < 0.4
    sp = (1.5, 0.5, 0.9)
    assert average_surface_distance(a, b, sp) == pytest.approx(
        average_surface_distance(b, a, sp), abs=1e-12
    )
    assert average_surface_distance(a, a, sp) == 0.0


def test_empty_masks_give_zero_or_infinity():
    empty = np.zeros((4, 4, 4), bool)
    full = empty.copy()
    full[1, 1, 1] = True
    assert average_surface_distance(empty, empty, (1, 1, 1)) == 0.0
    assert average_surface_distance(full, empty, (1, 1, 1)) == math.inf
    assert average_surface_distance(empty, full, (1, 1, 1)) == math.inf


def test_it_rejects_bad_spacing_and_mismatched_shapes():
    m = np.ones((2, 2, 2), bool)
    with pytest.raises(InvalidArray, match="spacing"):
        average_surface_distance(m, m, (1.0, 1.0))
    with pytest.raises(InvalidArray, match="spacing"):
        average_surface_distance(m, m, (1.0, 0.0, 1.0))
    with pytest.raises(InvalidArray, match="differs"):
        dice(m, np.ones((2, 2, 3), bool))


def test_evaluate_volume_reports_every_foreground_class():
    ref = np.zeros((8, 5, 5), np.uint8)
    ref[1:5, 1:4, 1:4] = 1  # the hand-counted box
    pred = np.roll(ref, 1, axis=0)
    pred[7, 0, 0] = 2  # class 2 only in pred
    spacing = (2.5, 1.0, 0.8)
    result = evaluate_volume(pred, ref, spacing, 4)
    assert sorted(result) == [1, 2, 3]
    assert result[1]["dice"] == pytest.approx(2 * 27 / 72)  # 3 of 4 layers of 9 shared
    assert result[1]["asd"] == pytest.approx(46.6 / 68, abs=1e-12)
    assert result[2] == {"dice": 0.0, "asd": math.inf}
    assert result[3] == {"dice": 1.0, "asd": 0.0}


def test_evaluate_volume_agrees_with_the_single_mask_functions():
    rng = np.random.default_rng(3)
    pred = rng.integers(0, 4, size=(6, 7, 8))
    ref = rng.integers(0, 4, size=(6, 7, 8))
    spacing = (2.0, 0.8, 0.8)
    result = evaluate_volume(pred, ref, spacing, 4)
    for c in (1, 2, 3):
        assert result[c]["dice"] == pytest.approx(dice(pred == c, ref == c))
        assert result[c]["asd"] == pytest.approx(
            average_surface_distance(pred == c, ref == c, spacing), abs=1e-12
        )


def test_evaluate_volume_rejects_labels_beyond_n_classes():
    with pytest.raises(InvalidArray, match="n_classes is 2"):
        evaluate_volume(np.full((2, 2, 2), 3), np.zeros((2, 2, 2), int), (1, 1, 1), 2)
